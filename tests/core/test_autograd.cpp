// Autograd through the host C ABI: leaves, accumulation, retain_graph, no_grad, detach,
// requires_grad_, errors (non-scalar roots, in-place changes of saved tensors and leaves),
// in-place rebase, views of leaves, tsr_autograd_grad (threads: test_autograd_threads.cpp).
#include <algorithm>
#include <cmath>

#include "helpers.h"

namespace {
using V = std::vector<int64_t>;
using D = std::vector<double>;

Owned f64(const D& v, const V& shape) {
  return make(v, shape, TSR_FLOAT64);
}
Owned leaf(const D& v, const V& shape) {
  Owned t = f64(v, shape);
  EXPECT_OK(tsr_set_requires_grad(t, 1));
  return t;
}
D grad_of(TsrTensor t) {
  Owned g;
  EXPECT_OK(tsr_grad(t, g.out()));
  if (!g.t) return {};
  EXPECT_EQ(info(g).dtype, info(t).dtype);
  EXPECT_EQ(sizes(g), sizes(t));
  return read<double>(g);
}
Owned sum_all(TsrTensor t) {
  Owned s;
  EXPECT_OK(tsr_sum(t, nullptr, 0, 0, s.out()));
  return s;
}
int32_t backward(TsrTensor root, int32_t retain = 0) {
  return tsr_backward(&root, nullptr, 1, retain);
}
std::string fn_name(TsrTensor t) {
  const char* name = nullptr;
  EXPECT_OK(tsr_grad_fn_name(t, &name));
  return name ? name : "";
}
int32_t flag(int32_t (*get)(TsrTensor, int32_t*), TsrTensor t) {
  int32_t v = -1;
  EXPECT_OK(get(t, &v));
  return v;
}

int32_t op_id(const char* name) {
  int32_t id = -1;
  EXPECT_OK(tsr_op_lookup(name, &id));
  return id;
}
// t = op(t, value) written into t.
int32_t scalar_in_place(const char* op, TsrTensor t, double value) {
  TsrAttrs a;
  tsr_attrs_init(&a);
  a.scalar_arg = 1;
  a.scalar = tsr_scalar_float(value);
  TsrTensor out = t;
  return tsr_call(op_id(op), &t, 1, &a, &out, 1);
}
// dst = op(dst, other) written into dst.
int32_t in_place(const char* op, TsrTensor dst, TsrTensor other) {
  TsrTensor in[2] = {dst, other}, out = dst;
  return tsr_call(op_id(op), in, 2, nullptr, &out, 1);
}

// Grad mode off for a scope.
struct NoGrad {
  int32_t prev = tsr_set_grad_enabled(0);
  ~NoGrad() { tsr_set_grad_enabled(prev); }
};
}  // namespace

TEST(Autograd, LeavesAndAccumulation) {
  Owned a = leaf({1, 2, 3}, {3}), b = leaf({4, 5, 6}, {3}), p, s;
  EXPECT_EQ(flag(tsr_is_leaf, a), 1);
  EXPECT_EQ(flag(tsr_requires_grad, a), 1);
  ASSERT_OK(tsr_mul(a, b, p.out()));
  EXPECT_EQ(flag(tsr_is_leaf, p), 0);
  EXPECT_EQ(flag(tsr_requires_grad, p), 1);
  EXPECT_EQ(fn_name(p), "mul_backward");
  EXPECT_EQ(fn_name(a), "");
  s = sum_all(p);
  EXPECT_EQ(fn_name(s), "sum_backward");
  ASSERT_OK(backward(s, 1));
  EXPECT_EQ(grad_of(a), (D{4, 5, 6}));
  EXPECT_EQ(grad_of(b), (D{1, 2, 3}));
  ASSERT_OK(backward(s));  // retained: a second pass accumulates
  EXPECT_EQ(grad_of(a), (D{8, 10, 12}));
  // The second backward freed the saved tensors: a third one names the node.
  expect_error(backward(s), TSR_ERR_RUNTIME, {"[mul_backward]", "has been freed", "retain_graph"});
  ASSERT_OK(tsr_set_grad(a, nullptr));
  EXPECT_TRUE(grad_of(a).empty());
  // set_grad checks shape and dtype.
  Owned wrong = f64({1, 2}, {2});
  expect_error(tsr_set_grad(a, wrong), TSR_ERR_INVALID_ARGUMENT, {"[set_grad]", "[2]", "[3]"});
}

TEST(Autograd, SharedInputsAndBroadcastSumPerLeaf) {
  // y = a * a + a (broadcast against c): dy/da = 2a + 1 per use, summed over c's rows.
  Owned a = leaf({1, 2}, {2}), c = f64({1, 1, 1, 1, 1, 1}, {3, 2}), sq, y, z, s;
  ASSERT_OK(tsr_mul(a, a, sq.out()));
  ASSERT_OK(tsr_add(sq, a, y.out()));
  ASSERT_OK(tsr_mul(y, c, z.out()));  // [3, 2]
  s = sum_all(z);
  ASSERT_OK(backward(s));
  EXPECT_EQ(grad_of(a), (D{9, 15}));  // 3 rows * (2a + 1)
  EXPECT_TRUE(grad_of(c).empty());
}

TEST(Autograd, NoGradDetachAndRequiresGrad) {
  Owned a = leaf({1, 2}, {2}), y, d, z;
  {
    NoGrad ng;
    EXPECT_EQ(tsr_is_grad_enabled(), 0);
    ASSERT_OK(tsr_exp(a, y.out()));
    EXPECT_EQ(flag(tsr_requires_grad, y), 0);
    ASSERT_OK(scalar_in_place("mul", a, 2));  // optimizers update leaves in place under no_grad
  }
  EXPECT_EQ(tsr_is_grad_enabled(), 1);
  ASSERT_OK(tsr_detach(a, d.out()));
  EXPECT_EQ(flag(tsr_requires_grad, d), 0);
  EXPECT_EQ(info(d).data, info(a).data);
  ASSERT_OK(tsr_mul(d, d, z.out()));
  EXPECT_EQ(flag(tsr_requires_grad, z), 0);

  // requires_grad_ only on floating dtypes; only leaves can turn it off.
  Owned i = i32({1, 2}, {2}), e;
  expect_error(tsr_set_requires_grad(i, 1), TSR_ERR_TYPE, {"[requires_grad_]", "int32"});
  ASSERT_OK(tsr_exp(a, e.out()));
  expect_error(tsr_set_requires_grad(e, 0), TSR_ERR_RUNTIME, {"leaf", "exp_backward"});
  ASSERT_OK(tsr_set_requires_grad(a, 0));
  EXPECT_EQ(flag(tsr_requires_grad, a), 0);
  Owned n;
  ASSERT_OK(tsr_exp(a, n.out()));
  EXPECT_EQ(flag(tsr_requires_grad, n), 0);
  expect_error(backward(n), TSR_ERR_RUNTIME, {"does not require grad"});
}

TEST(Autograd, NonScalarRootNeedsAGradient) {
  Owned a = leaf({1, 2, 3, 4, 5, 6}, {2, 3}), y;
  ASSERT_OK(tsr_mul(a, a, y.out()));
  expect_error(backward(y), TSR_ERR_INVALID_ARGUMENT, {"[backward]", "[2, 3]", "gradient"});
  Owned g = f64({1, 1, 1, 1, 1, 1}, {2, 3}), bad = f64({1, 1}, {2});
  TsrTensor root = y, wrong = bad;
  expect_error(tsr_backward(&root, &wrong, 1, 0), TSR_ERR_INVALID_ARGUMENT, {"[2]", "[2, 3]"});
  TsrTensor grad = g;
  ASSERT_OK(tsr_backward(&root, &grad, 1, 0));
  EXPECT_EQ(grad_of(a), (D{2, 4, 6, 8, 10, 12}));
}

TEST(Autograd, InPlaceChangeOfASavedTensorNamesTheOp) {
  Owned a = leaf({1, 2, 3, 4, 5, 6}, {2, 3}), w = leaf({1, 1, 1, 1, 1, 1}, {2, 3}), c, y, s;
  ASSERT_OK(tsr_clone(a, c.out()));
  ASSERT_OK(tsr_mul(c, w, y.out()));  // saves c (input 0) for w's gradient
  ASSERT_OK(scalar_in_place("add", c, 1));
  s = sum_all(y);
  expect_error(
      backward(s), TSR_ERR_RUNTIME,
      {"[mul_backward] a tensor saved for backward (input 0, [2, 3] float64 on cpu) was modified in place "
       "(version 1, saved at 0)"});
  // A saved output: exp keeps its result.
  Owned e, s2;
  ASSERT_OK(tsr_exp(a, e.out()));
  s2 = sum_all(e);
  ASSERT_OK(scalar_in_place("mul", e, 2));
  expect_error(backward(s2), TSR_ERR_RUNTIME, {"[exp_backward]", "output", "modified in place"});
}

TEST(Autograd, InPlaceOnLeavesViewsAndOutArgs) {
  Owned a = leaf({1, 2}, {2}), b = f64({3, 4}, {2}), v, o;
  expect_error(scalar_in_place("add", a, 1), TSR_ERR_RUNTIME, {"[add]", "leaf", "in-place"});
  expect_error(tsr_copy_(a, b), TSR_ERR_RUNTIME, {"[copy]", "leaf"});
  {
    NoGrad ng;
    ASSERT_OK(scalar_in_place("add", a, 1));
  }
  ASSERT_OK(tsr_select(a, 0, 0, v.out()));
  expect_error(scalar_in_place("mul", v, 2), TSR_ERR_NOT_IMPLEMENTED, {"[mul]", "view", "not supported"});
  // out= with an input that requires grad.
  Owned dst = f64({0, 0}, {2});
  TsrTensor in[2] = {a, b}, out = dst;
  expect_error(tsr_call(op_id("add"), in, 2, nullptr, &out, 1), TSR_ERR_RUNTIME, {"[add]", "out="});
}

TEST(Autograd, InPlaceOnANonLeafRebasesItsHistory) {
  Owned a = leaf({1, 2, 3}, {3}), y;
  ASSERT_OK(tsr_mul_scalar(a, tsr_scalar_float(2), y.out()));  // y = 2a
  ASSERT_OK(in_place("mul", y, a));                            // y = 2a * a
  EXPECT_EQ(fn_name(y), "mul_backward");
  Owned t = sum_all(y);
  ASSERT_OK(backward(t));
  EXPECT_EQ(grad_of(a), (D{4, 8, 12}));  // d(2a^2) = 4a

  // copy_ of a tensor that requires grad into a fresh one: gradients flow back through it.
  Owned x = leaf({1, 2}, {2}), buf = f64({0, 0}, {2}), q;
  ASSERT_OK(tsr_copy_(buf, x));
  EXPECT_EQ(fn_name(buf), "copy_backward");
  ASSERT_OK(tsr_mul(buf, buf, q.out()));
  Owned qs = sum_all(q);
  ASSERT_OK(backward(qs));
  EXPECT_EQ(grad_of(x), (D{2, 4}));
  // Filling a non-leaf drops its history.
  ASSERT_OK(tsr_fill_(buf, tsr_scalar_float(0)));
  EXPECT_EQ(flag(tsr_requires_grad, buf), 0);
}

TEST(Autograd, ViewsOfLeaves) {
  Owned a = leaf({1, 2, 3, 4, 5, 6}, {2, 3}), t, row, sl, e, as, p1, p2, p3, p4, sum;
  ASSERT_OK(tsr_t(a, t.out()));                   // [3, 2]
  ASSERT_OK(tsr_select(t, 1, 1, row.out()));      // a[1, :] = {4, 5, 6}
  ASSERT_OK(tsr_slice(a, 1, 0, 3, 2, sl.out()));  // a[:, ::2]: [2, 2]
  int64_t shape[] = {2, 2, 3};
  ASSERT_OK(tsr_expand(a, shape, 3, e.out()));  // each element used twice
  int64_t sz[] = {2, 2}, st[] = {1, 1};         // overlapping: {a0 a1; a1 a2}
  ASSERT_OK(tsr_as_strided(a, sz, st, 2, 0, as.out()));
  EXPECT_EQ(fn_name(row), "select_backward");
  p1 = sum_all(row), p2 = sum_all(sl), p3 = sum_all(e), p4 = sum_all(as);
  Owned s12, s34;
  ASSERT_OK(tsr_add(p1, p2, s12.out()));
  ASSERT_OK(tsr_add(p3, p4, s34.out()));
  ASSERT_OK(tsr_add(s12, s34, sum.out()));
  ASSERT_OK(backward(sum));
  //        row       slice     expand   as_strided
  EXPECT_EQ(grad_of(a), (D{0 + 1 + 2 + 1, 0 + 0 + 2 + 2, 0 + 1 + 2 + 1, 1 + 1 + 2, 1 + 0 + 2, 1 + 1 + 2}));
}

TEST(Autograd, GradientsHaveTheInputsDtype) {
  // float64 leaf -> float32 (tsr_to) -> * float32 -> sum: the gradient comes back as float64.
  Owned a = leaf({1, 2}, {2}), a32, b = f32({3, 4}, {2}), p, s, same;
  ASSERT_OK(tsr_to(a, kCpu, TSR_FLOAT32, a32.out()));
  EXPECT_EQ(fn_name(a32), "copy_backward");
  ASSERT_OK(tsr_to(a, kCpu, -1, same.out()));
  EXPECT_EQ(same.t, a.t);  // nothing to do: a itself, no node
  ASSERT_OK(tsr_mul(a32, b, p.out()));
  s = sum_all(p);
  ASSERT_OK(backward(s));
  EXPECT_EQ(grad_of(a), (D{3, 4}));
  // An integer operand gets no gradient; mixed promotion keeps each input's dtype.
  Owned x = leaf({1.5, 2.5}, {2}), n = i32({2, 3}, {2}), q, qs;
  ASSERT_OK(tsr_mul(x, n, q.out()));
  qs = sum_all(q);
  ASSERT_OK(backward(qs));
  EXPECT_EQ(grad_of(x), (D{2, 3}));
}

TEST(Autograd, PowGradientsComputeInTheResultDtype) {
  // A 0-dim float64 base with an int32 exponent tensor: the result is float64, and so must be
  // the rule's intermediates (exponent - 1.0 in float32 would outrank the 0-dim base).
  Owned a = leaf({1.7}, {}), e = i32({3, 1, 2, 4}, {1, 4}), p, s;
  ASSERT_OK(tsr_pow(a, e, p.out()));
  s = sum_all(p);
  ASSERT_OK(backward(s));
  EXPECT_NEAR(grad_of(a)[0], 3 * 1.7 * 1.7 + 1 + 2 * 1.7 + 4 * 1.7 * 1.7 * 1.7, 1e-13);
  // An int32 base with a 0-dim float64 exponent: log(base) in float64 too.
  Owned b = i32({2, 3, 5, 7}, {1, 4}), x = leaf({1.3}, {}), q, t;
  ASSERT_OK(tsr_pow(b, x, q.out()));
  t = sum_all(q);
  ASSERT_OK(backward(t));
  double want = 0;
  for (double v : {2.0, 3.0, 5.0, 7.0}) want += std::pow(v, 1.3) * std::log(v);
  EXPECT_NEAR(grad_of(x)[0], want, 1e-12);
}

// PyTorch's std_backward: g / (2 std) is masked to 0 where std is 0, then var's rule
// 2 (x - mean) / (N - correction) applies (N - correction <= 0 included).
TEST(Autograd, StdGradientIsZeroWhereAllValuesAreEqual) {
  auto std_grad = [](const D& v, const V& shape, const V& expand_to, const V& dims, int64_t correction) {
    Owned x = leaf(v, shape), e, y, s;
    EXPECT_OK(tsr_expand(x, expand_to.data(), static_cast<int32_t>(expand_to.size()), e.out()));
    TsrAttrs a;
    tsr_attrs_init(&a);
    a.ndims = static_cast<int32_t>(dims.size());
    std::copy(dims.begin(), dims.end(), a.dims);
    a.correction = correction;
    TsrTensor in = e, out = nullptr;
    EXPECT_OK(tsr_call(op_id("std"), &in, 1, &a, &out, 1));
    y = Owned(out);
    s = sum_all(y);
    EXPECT_OK(backward(s));
    return grad_of(x);
  };
  EXPECT_EQ(std_grad({0.5}, {1}, {4}, {}, 1), (D{0}));           // torch: 0, not 0 / 0
  EXPECT_EQ(std_grad({0.5, 0.5}, {2}, {2}, {}, 0), (D{0, 0}));
  D rows = std_grad({0.5, 0.5, 1, 2}, {2, 2}, {2, 2}, {1}, 1);  // one constant row, one not
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], 0);
  EXPECT_EQ(rows[1], 0);
  EXPECT_NEAR(rows[2], -std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(rows[3], std::sqrt(0.5), 1e-15);
  D one = std_grad({0.5}, {1}, {1}, {0}, 1);  // N - correction = 0: std is nan, and so is its gradient
  ASSERT_EQ(one.size(), 1u);
  EXPECT_TRUE(std::isnan(one[0]));
}

TEST(Autograd, TiesSplitTheGradient) {
  Owned a = leaf({1, 3, 3}, {3}), m, b = leaf({2, 2}, {2}), c = f64({2, 5}, {2}), mx, s;
  ASSERT_OK(tsr_max(a, nullptr, 0, 0, m.out()));
  ASSERT_OK(backward(m));
  EXPECT_EQ(grad_of(a), (D{0, 0.5, 0.5}));
  ASSERT_OK(tsr_maximum(b, c, mx.out()));
  s = sum_all(mx);
  ASSERT_OK(backward(s));
  EXPECT_EQ(grad_of(b), (D{0.5, 0}));
}

TEST(Autograd, RetainGradAndAutogradGrad) {
  Owned a = leaf({1, 2}, {2}), b = leaf({3, 4}, {2}), y, s, u = leaf({1}, {1});
  ASSERT_OK(tsr_mul(a, b, y.out()));
  ASSERT_OK(tsr_retain_grad(y));
  s = sum_all(y);
  TsrTensor root = s, inputs[3] = {a, y, u};
  TsrTensor outs[3] = {};
  expect_error(tsr_autograd_grad(&root, nullptr, 1, inputs, 3, 1, 0, outs), TSR_ERR_RUNTIME,
               {"input 2", "allow_unused"});
  ASSERT_OK(tsr_autograd_grad(&root, nullptr, 1, inputs, 3, 1, 1, outs));
  Owned ga(outs[0]), gy(outs[1]);
  EXPECT_EQ(outs[2], nullptr);
  EXPECT_EQ(read<double>(ga), (D{3, 4}));
  EXPECT_EQ(read<double>(gy), (D{1, 1}));
  EXPECT_TRUE(grad_of(a).empty());  // .grad untouched
  EXPECT_TRUE(grad_of(y).empty());
  ASSERT_OK(backward(s));
  EXPECT_EQ(grad_of(a), (D{3, 4}));
  EXPECT_EQ(grad_of(y), (D{1, 1}));  // retained
  Owned i = i32({1}, {1});
  expect_error(tsr_retain_grad(i), TSR_ERR_RUNTIME, {"does not require grad"});
}

TEST(Autograd, LongChainsAreFreedWithoutRecursion) {
  Owned x = leaf({1}, {1});
  Owned y;
  ASSERT_OK(tsr_mul_scalar(x, tsr_scalar_float(1), y.out()));
  for (int i = 0; i < 50000; ++i) {
    Owned next;
    ASSERT_OK(tsr_mul_scalar(y, tsr_scalar_float(1), next.out()));
    y = std::move(next);
  }
  ASSERT_OK(backward(y));  // the engine walks the chain with a stack of its own
  EXPECT_EQ(grad_of(x), (D{1}));
}  // releasing y frees 50001 nodes in a loop
