// Views: sizes, strides, offsets, shared storage and version counters; view vs reshape copies.
#include "helpers.h"

namespace {
using V = std::vector<int64_t>;

Owned iota(const V& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i);
  return f32(v, shape);
}
void expect_geometry(TsrTensor t, const V& sz, const V& st, int64_t offset) {
  EXPECT_EQ(sizes(t), sz);
  EXPECT_EQ(strides(t), st);
  EXPECT_EQ(info(t).storage_offset, offset);
}
bool shares(TsrTensor a, TsrTensor b) {  // same storage: a write through one shows in the other
  return info(a).version == info(b).version;
}
}  // namespace

TEST(Views, ViewAndReshape) {
  Owned a = iota({2, 3, 4}), v, r, at, bad, rc;
  int64_t shape[] = {6, -1};
  ASSERT_OK(tsr_view(a, shape, 2, v.out()));
  expect_geometry(v, {6, 4}, {4, 1}, 0);
  EXPECT_EQ(info(v).data, info(a).data);
  ASSERT_OK(tsr_fill_(v, tsr_scalar_int(1)));
  EXPECT_EQ(info(a).version, 1u);  // shared version counter
  EXPECT_EQ(read<float>(a)[23], 1.0f);

  Owned m = iota({4, 2});
  ASSERT_OK(tsr_t(m, at.out()));  // (2, 4) with strides (1, 2)
  int64_t flat[] = {8};
  expect_error(tsr_view(at, flat, 1, bad.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[view]", "[8]", "sizes [2, 4]", "strides [1, 2]", "float32", "cpu"});
  ASSERT_OK(tsr_reshape(at, flat, 1, rc.out()));  // copies
  EXPECT_NE(info(rc).data, info(m).data);
  EXPECT_EQ(read<float>(rc), (std::vector<float>{0, 2, 4, 6, 1, 3, 5, 7}));
  int64_t two[] = {2, 2, 2};
  ASSERT_OK(tsr_reshape(m, two, 3, r.out()));  // no copy
  EXPECT_EQ(info(r).data, info(m).data);
  expect_geometry(r, {2, 2, 2}, {4, 2, 1}, 0);
  int64_t wrong[] = {3, -1};
  expect_error(tsr_view(m, wrong, 2, bad.out()), TSR_ERR_INVALID_ARGUMENT, {"[view]", "[3, -1]", "size 8"});

  // A transposed view that can still be viewed: splitting a dim keeps its stride pattern.
  Owned split;
  int64_t s2[] = {2, 2, 2};
  ASSERT_OK(tsr_view(at, s2, 3, split.out()));
  expect_geometry(split, {2, 2, 2}, {1, 4, 2}, 0);
}

TEST(Views, PermuteTransposeT) {
  Owned a = iota({2, 3, 4}), p, tr, t2, bad;
  int64_t dims[] = {2, 0, 1};
  ASSERT_OK(tsr_permute(a, dims, 3, p.out()));
  expect_geometry(p, {4, 2, 3}, {1, 12, 4}, 0);
  EXPECT_EQ(read<float>(p)[1], 4.0f);  // p[0,0,1] = a[0,1,0]
  int64_t dup[] = {0, 0, 1};
  expect_error(tsr_permute(a, dup, 3, bad.out()), TSR_ERR_INVALID_ARGUMENT, {"[permute]", "repeated"});
  ASSERT_OK(tsr_transpose(a, -1, 0, tr.out()));
  expect_geometry(tr, {4, 3, 2}, {1, 4, 12}, 0);
  expect_error(tsr_t(a, bad.out()), TSR_ERR_INVALID_ARGUMENT, {"[t]", "[2, 3, 4]"});
  Owned v = iota({3});
  ASSERT_OK(tsr_t(v, t2.out()));
  expect_geometry(t2, {3}, {1}, 0);
}

TEST(Views, SliceNarrowSelect) {
  Owned a = iota({4, 5}), s, e, n, sel, sel2, bad;
  ASSERT_OK(tsr_slice(a, 1, 1, 100, 2, s.out()));  // a[:, 1::2]
  expect_geometry(s, {4, 2}, {5, 2}, 1);
  EXPECT_EQ(read<float>(s), (std::vector<float>{1, 3, 6, 8, 11, 13, 16, 18}));
  ASSERT_OK(tsr_slice(a, 0, -3, -1, 1, s.out()));  // a[-3:-1]
  expect_geometry(s, {2, 5}, {5, 1}, 5);
  ASSERT_OK(tsr_slice(a, 0, 3, 1, 1, e.out()));  // empty
  EXPECT_EQ(sizes(e), (V{0, 5}));
  ASSERT_OK(tsr_slice(a, 0, -100, 100, 3, s.out()));
  expect_geometry(s, {2, 5}, {15, 1}, 0);
  expect_error(tsr_slice(a, 0, 0, 4, 0, bad.out()), TSR_ERR_INVALID_ARGUMENT, {"[slice]", "step", "[4, 5]"});

  ASSERT_OK(tsr_narrow(a, 1, 2, 3, n.out()));
  expect_geometry(n, {4, 3}, {5, 1}, 2);
  expect_error(tsr_narrow(a, 1, 3, 3, bad.out()), TSR_ERR_INVALID_ARGUMENT, {"[narrow]", "[4, 5]"});

  ASSERT_OK(tsr_select(a, 0, -1, sel.out()));
  expect_geometry(sel, {5}, {1}, 15);
  ASSERT_OK(tsr_select(a, 1, 2, sel2.out()));
  expect_geometry(sel2, {4}, {5}, 2);
  EXPECT_EQ(read<float>(sel2), (std::vector<float>{2, 7, 12, 17}));
  expect_error(tsr_select(a, 0, 4, bad.out()), TSR_ERR_INDEX, {"[select]", "index 4", "size 4", "[4, 5] float32"});
  ASSERT_OK(tsr_fill_(sel2, tsr_scalar_int(-1)));
  EXPECT_EQ(read<float>(a)[7], -1.0f);
  EXPECT_TRUE(shares(a, sel));
}

TEST(Views, ExpandSqueezeUnsqueezeFlatten) {
  Owned a = iota({3, 1}), e, bad, u, sq, sq2, f, f2, s0;
  int64_t shape[] = {2, -1, 4};
  ASSERT_OK(tsr_expand(a, shape, 3, e.out()));
  expect_geometry(e, {2, 3, 4}, {0, 1, 0}, 0);
  EXPECT_EQ(read<float>(e)[5], 1.0f);
  int64_t badshape[] = {4, 4};
  expect_error(tsr_expand(a, badshape, 2, bad.out()), TSR_ERR_INVALID_ARGUMENT, {"[expand]", "[4, 4]", "[3, 1]"});

  ASSERT_OK(tsr_unsqueeze(a, 0, u.out()));
  expect_geometry(u, {1, 3, 1}, {3, 1, 1}, 0);
  ASSERT_OK(tsr_unsqueeze(a, -1, u.out()));
  expect_geometry(u, {3, 1, 1}, {1, 1, 1}, 0);
  expect_error(tsr_unsqueeze(a, 3, bad.out()), TSR_ERR_INDEX, {"[unsqueeze]", "dim 3", "2-D"});

  Owned b = iota({1, 3, 1, 2});
  ASSERT_OK(tsr_squeeze(b, nullptr, 0, sq.out()));
  expect_geometry(sq, {3, 2}, {2, 1}, 0);
  int64_t d[] = {2, 1};  // dim 1 has size 3: kept
  ASSERT_OK(tsr_squeeze(b, d, 2, sq2.out()));
  expect_geometry(sq2, {1, 3, 2}, {6, 2, 1}, 0);

  Owned c = iota({2, 3, 4});
  ASSERT_OK(tsr_flatten(c, 1, -1, f.out()));
  expect_geometry(f, {2, 12}, {12, 1}, 0);
  EXPECT_EQ(info(f).data, info(c).data);
  Owned ct;
  ASSERT_OK(tsr_transpose(c, 0, 2, ct.out()));
  ASSERT_OK(tsr_flatten(ct, 0, 1, f2.out()));  // needs a copy
  EXPECT_EQ(sizes(f2), (V{12, 2}));
  EXPECT_NE(info(f2).data, info(c).data);
  Owned scalar = f32({5}, {});
  ASSERT_OK(tsr_flatten(scalar, 0, -1, s0.out()));
  EXPECT_EQ(sizes(s0), (V{1}));
}

TEST(Views, AsStrided) {
  Owned a = iota({6}), w, bad;
  int64_t sz[] = {3, 3}, st[] = {1, 1};
  ASSERT_OK(tsr_as_strided(a, sz, st, 2, 1, w.out()));  // sliding windows
  expect_geometry(w, {3, 3}, {1, 1}, 1);
  EXPECT_EQ(read<float>(w), (std::vector<float>{1, 2, 3, 2, 3, 4, 3, 4, 5}));
  int64_t st2[] = {2, 1};
  expect_error(tsr_as_strided(a, sz, st2, 2, 0, bad.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[as_strided]", "[3, 3]", "[2, 1]", "6 elements"});
}

TEST(Views, OutOfRangeDims) {
  Owned a = iota({2, 3}), bad;
  expect_error(tsr_transpose(a, 0, 2, bad.out()), TSR_ERR_INDEX,
               {"[transpose]", "dim 2", "2-D", "[-2, 1]", "[2, 3] float32 on cpu"});
  expect_error(tsr_select(a, -3, 0, bad.out()), TSR_ERR_INDEX, {"[select]", "dim -3"});
  int64_t d[] = {5};
  expect_error(tsr_squeeze(a, d, 1, bad.out()), TSR_ERR_INDEX, {"[squeeze]", "dim 5"});
  expect_error(tsr_flatten(a, 0, 4, bad.out()), TSR_ERR_INDEX, {"[flatten]", "dim 4"});
}

TEST(Views, ThroughTsrCall) {
  Owned a = iota({2, 3});
  TsrAttrs attrs;
  tsr_attrs_init(&attrs);
  attrs.dim = 0;
  attrs.dim2 = 1;
  int32_t op = -1;
  ASSERT_OK(tsr_op_lookup("transpose", &op));
  TsrTensor in[] = {a};
  TsrTensor out[] = {nullptr};
  ASSERT_OK(tsr_call(op, in, 1, &attrs, out, 1));
  Owned r(out[0]);
  expect_geometry(r, {3, 2}, {1, 3}, 0);
  TsrTensor given[] = {a};
  expect_error(tsr_call(op, in, 1, &attrs, given, 1), TSR_ERR_INVALID_ARGUMENT, {"[transpose]", "NULL"});
}
