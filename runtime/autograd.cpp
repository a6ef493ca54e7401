// The autograd engine (DESIGN §4): metadata lifetime, recording a node per differentiable op
// whose input requires grad (in-place ops rebase their output's history), and backward:
// dependency counts from the roots, a ready stack, gradients summed per node and accumulated
// into leaves under a per-leaf mutex. No process-wide lock; backward runs on the calling thread.
#include "autograd.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "dispatch.h"
#include "error.h"
#include "ops.h"

namespace tessera::autograd {

namespace {

thread_local bool t_grad_enabled = true;

// "<op>_backward" for differentiable ops.
#define TSR_BW_NAME_1(name) #name "_backward",
#define TSR_BW_NAME_0(name) nullptr,
#define TSR_OP(name, kind, types, diff) TSR_BW_NAME_##diff(name)
constexpr const char* kNodeNames[kNumOps] = {
#include "tessera/ops.def"
};
#undef TSR_OP

#define TSR_BW_FN_1(name) &name##_backward,
#define TSR_BW_FN_0(name) nullptr,
#define TSR_OP(name, kind, types, diff) TSR_BW_FN_##diff(name)
constexpr BackwardFn kRules[kNumOps] = {
#include "tessera/ops.def"
};
#undef TSR_OP

AutogradMeta* meta(const TensorImpl& t) {
  return static_cast<AutogradMeta*>(t.autograd_);
}

AutogradMeta& ensure_meta(TensorImpl& t) {
  if (!t.autograd_) t.autograd_ = new AutogradMeta;
  return *meta(t);
}

bool meta_requires_grad(const AutogradMeta* m) {
  return m && (m->requires_grad_ || m->grad_fn_);
}

std::string prefix(int32_t op) {
  return std::string("[") + kOpInfo[op].name + "] ";
}

// Whether t owns its storage's geometry (not a view of another tensor): the tensor a fresh
// allocation was made for, or the only tensor over borrowed memory.
bool is_base(const TensorImpl& t) {
  const Storage& s = *t.storage_;
  return s.block_ ? &s.block_->impl == &t : s.refcount_.load(std::memory_order_relaxed) == 1;
}

// Where a gradient for t goes: its node, or t itself as a leaf.
Edge edge_to(TensorImpl& t) {
  AutogradMeta& m = *meta(t);
  if (m.grad_fn_) {
    m.grad_fn_->retain();
    return {m.grad_fn_, nullptr};
  }
  m.retain();
  return {nullptr, &m};
}

// A node for op over `in`, with edges to the inputs selected by `needs`.
Node* make_node(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, uint32_t needs) {
  auto* n = new Node;
  n->op_ = op;
  n->num_inputs_ = nin;
  n->attrs_ = attrs;
  for (int32_t i = 0; i < nin; ++i) {
    InputMeta& im = n->in_[i];
    std::copy_n(in[i]->sizes_, in[i]->ndim_, im.sizes_);
    im.ndim_ = in[i]->ndim_;
    im.dtype_ = in[i]->dtype_;
    im.device_ = in[i]->device_;
    if (needs >> i & 1) n->next_[i] = edge_to(*in[i]);
  }
  if (op == kOp_as_strided) {
    std::copy_n(in[0]->strides_, in[0]->ndim_, n->in_strides_);
    n->in_offset_ = in[0]->offset_;
  }
  return n;
}

// Keeps the tensors op's rule reads: inputs x[i] themselves, the output as a detached alias
// (a new impl over its storage, without autograd metadata: no cycle through the node).
void save(Node& n, uint32_t mask, TensorImpl* const* x, TensorImpl& out, TensorImpl* const* aux = nullptr,
          int32_t num_aux = 0) {
  for (int32_t j = 0; j < num_aux && j < 2; ++j)
    if (mask >> (kSavedAux + j) & 1) {
      aux[j]->retain();
      n.saved_[kSavedAux + j] = {aux[j], aux[j]->version()};
    }
  for (int32_t i = 0; i < n.num_inputs_; ++i)
    if (mask >> i & 1) {
      x[i]->retain();
      n.saved_[i] = {x[i], x[i]->version()};
    }
  if (mask & kSaveOut)
    n.saved_[kSavedOutput] = {make_view(out, out.sizes_, out.strides_, out.ndim_, out.offset_).release(),
                              out.version()};
  // Only the slots filled: a rule may name an optional input the call did not pass
  // (layer_norm's weight), which is then neither kept nor checked.
  const uint32_t inputs = (1u << n.num_inputs_) - 1;
  const uint32_t aux_filled = ((1u << std::min(num_aux, 2)) - 1) << kSavedAux;
  n.saved_mask_ = mask & (inputs | kSaveOut | aux_filled);
}

// Drops m's history: its node's reference, and the node's retain_grad slot when it is m.
void unlink(AutogradMeta& m) {
  Node* old = std::exchange(m.grad_fn_, nullptr);
  if (!old) return;
  if (old->retained_ == &m) {
    old->retained_ = nullptr;
    m.release();  // the tensor still holds m
  }
  old->release();
}

// Makes node (its reference is taken) the history of t; retain_grad() follows the tensor.
void attach(TensorImpl& t, Node* node) {
  AutogradMeta& m = ensure_meta(t);
  unlink(m);
  m.grad_fn_ = node;
  if (m.retains_grad_) {
    m.retain();
    node->retained_ = &m;
  }
}

void run_no_grad(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
                 int32_t nout = 1) {
  NoGradGuard no_grad;
  call_untracked(op, in, nin, attrs, outs, nout);
}

// out= and in-place calls (a given output) while grad mode is on.
void record_in_place(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl* dst,
                     uint32_t needs) {
  const OpInfo& info = kOpInfo[op];
  TensorImpl* outs[1] = {dst};
  const bool in_place = info.kind == OpKind::COPY || info.kind == OpKind::FILL ||
                        info.kind == OpKind::RANDOM || info.kind == OpKind::OPTIM ||
                        std::find(in, in + nin, dst) != in + nin;
  AutogradMeta* dm = meta(*dst);
  const bool dst_requires = meta_requires_grad(dm);
  if (!in_place) {
    if (needs || dst_requires)
      fail(TSR_ERR_RUNTIME, prefix(op) +
                                "out= arguments don't support autograd, but an input or the output " +
                                describe(*dst) + " requires grad (call it without out=, or under no_grad)");
    return call_untracked(op, in, nin, attrs, outs);
  }
  if (dst_requires && !dm->grad_fn_)
    fail(TSR_ERR_RUNTIME, prefix(op) + "a leaf tensor that requires grad (" + describe(*dst) +
                              ") is used in an in-place operation (do it under no_grad, or out of place)");
  if (dst_requires && kOpInfo[dm->grad_fn_->op_].kind == OpKind::VIEW)
    fail(TSR_ERR_NOT_IMPLEMENTED, prefix(op) + "in-place operation on a view (" + describe(*dst) +
                                      ", made by " + kOpInfo[dm->grad_fn_->op_].name +
                                      ") of a tensor that requires grad is not supported; apply it to the "
                                      "base tensor or out of place");
  if (!info.differentiable || !needs || !is_floating(dst->dtype_)) {
    run_no_grad(op, in, nin, attrs, outs);
    if (dst_requires) unlink(*dm);  // its value no longer depends on its history
    return;
  }
  if (!dst_requires && !is_base(*dst))
    fail(TSR_ERR_NOT_IMPLEMENTED, prefix(op) + "an in-place operation that makes a view (" + describe(*dst) +
                                      ") require grad is not supported; write into a tensor of its own");
  // Inputs the rule reads that the op overwrites are kept as copies of their old values.
  const uint32_t mask = saved_mask(op, attrs, needs);
  Tensor copies[3];
  TensorImpl* x[3] = {};
  for (int32_t i = 0; i < nin; ++i) {
    x[i] = in[i];
    if ((mask >> i & 1) && in[i]->storage_ == dst->storage_) {
      NoGradGuard no_grad;
      copies[i] = clone(*in[i]);
      x[i] = copies[i].get();
    }
  }
  Node* node = make_node(op, in, nin, attrs, needs);  // edges to the inputs' history before the op
  try {
    run_no_grad(op, in, nin, attrs, outs);
  } catch (...) {
    node->release();
    throw;
  }
  save(*node, mask, x, *dst);
  attach(*dst, node);
}

}  // namespace

// ---- lifetime ------------------------------------------------------------------------------

void AutogradMeta::destroy() {
  if (grad_fn_) grad_fn_->release();
  delete this;
}

namespace {
// Nodes whose last reference went on this thread, freed by the outermost destroy() in a loop
// (not recursively: a long chain would overflow the stack). The vector's memory is reused.
thread_local std::vector<Node*> t_dying;
thread_local bool t_destroying = false;
}  // namespace

void Node::destroy() {
  t_dying.push_back(this);
  if (t_destroying) return;
  t_destroying = true;
  while (!t_dying.empty()) {
    Node* n = t_dying.back();
    t_dying.pop_back();
    for (int32_t i = 0; i < n->num_inputs_; ++i) {
      if (n->next_[i].fn_) n->next_[i].fn_->release();
      if (n->next_[i].leaf_) n->next_[i].leaf_->release();
    }
    n->release_saved();
    if (n->retained_) n->retained_->release();
    delete n;
  }
  t_destroying = false;
}

void Node::release_saved() {
  for (SavedTensor& s : saved_)
    if (s.t_) std::exchange(s.t_, nullptr)->release();
}

const char* Node::name() const {
  return kNodeNames[op_];
}

void release_meta(TensorImpl& t) {
  AutogradMeta* m = meta(t);
  t.autograd_ = nullptr;
  unlink(*m);  // the node's retain_grad slot may hold m: no cycle may remain
  m->release();
}

// ---- grad mode and recording ----------------------------------------------------------------

bool grad_enabled() {
  return t_grad_enabled;
}

bool set_grad_enabled(bool enabled) {
  return std::exchange(t_grad_enabled, enabled);
}

void record_call(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl** outs,
                 int32_t nout) {
  if (!t_grad_enabled) return call_untracked(op, in, nin, attrs, outs, nout);
  uint32_t needs = 0;
  for (int32_t i = 0; i < nin; ++i) needs |= static_cast<uint32_t>(meta_requires_grad(meta(*in[i]))) << i;
  if (outs[0]) return record_in_place(op, in, nin, attrs, outs[0], needs);
  if (!needs || !kOpInfo[op].differentiable) return call_untracked(op, in, nin, attrs, outs, nout);
  const OpKind kind = kOpInfo[op].kind;
  if (kind != OpKind::SAMPLE && kind != OpKind::NN) [[likely]] {
    run_no_grad(op, in, nin, attrs, outs, nout);
    return record_op(op, in, nin, attrs, *outs[0], outs + 1, nout - 1);
  }
  // dropout and attention draw their mask from the generator: the node keeps the seed and
  // offset they drew, and its rule replays the same mask (hp[1] / hp[3] = 1).
  take_drawn_rng();
  run_no_grad(op, in, nin, attrs, outs, nout);
  TsrAttrs a = attrs;
  if (DrawnRng rng = take_drawn_rng(); rng.set) {
    a.seed = rng.seed;
    a.offset = rng.offset;
    a.hp[op == kOp_dropout ? 1 : 3] = 1;
  }
  record_op(op, in, nin, a, *outs[0], outs + 1, nout - 1);
}

void record_op(int32_t op, TensorImpl* const* in, int32_t nin, const TsrAttrs& attrs, TensorImpl& out,
               TensorImpl* const* aux, int32_t num_aux) {
  if (!t_grad_enabled || !is_floating(out.dtype_)) return;
  uint32_t needs = 0;
  for (int32_t i = 0; i < nin; ++i) needs |= static_cast<uint32_t>(meta_requires_grad(meta(*in[i]))) << i;
  if (!needs) return;
  Node* node = make_node(op, in, nin, attrs, needs);
  save(*node, saved_mask(op, attrs, needs), in, out, aux, num_aux);
  attach(out, node);
}

// ---- the engine -------------------------------------------------------------------------------

namespace {

// Per-backward state of one node reached from the roots.
struct NodeTask {
  explicit NodeTask(Node* n) : node(n) {}
  Node* node;
  int32_t deps = 0;                 // edges from reached nodes not yet run
  int32_t child[3] = {-1, -1, -1};  // task index of next_[i].fn_
  bool needed = true;               // grad_of: some requested input is reachable through it
  Tensor grad;                      // sum of the gradients of the node's output so far
};

// An input of grad_of: the gradient of the tensor made by `node`, or of the leaf `leaf`.
struct Target {
  Node* node = nullptr;
  AutogradMeta* leaf = nullptr;
};

void add_into(Tensor& sum, Tensor g) {
  if (!sum) {
    sum = std::move(g);
    return;
  }
  TensorImpl* in[2] = {sum.get(), g.get()};
  sum = call1(kOp_add, in, 2, default_attrs());
}

// A gradient nobody else sees, laid out as a fresh tensor: .grad may take it as it is.
bool stealable(const Tensor& g) {
  const Storage& s = *g->storage_;
  return g->refcount_.load(std::memory_order_relaxed) == 1 &&
         s.refcount_.load(std::memory_order_relaxed) == 1 && !g->autograd_ && g->offset_ == 0 &&
         g->is_contiguous() && s.nbytes_ == static_cast<size_t>(g->numel()) * itemsize(g->dtype_);
}

// .grad += g, under the tensor's own mutex (several threads may reach one leaf).
void accumulate(AutogradMeta& m, Tensor g) {
  std::lock_guard<std::mutex> lock(m.grad_mutex_);
  if (!m.grad_) {
    m.grad_ = stealable(g) ? std::move(g) : clone(*g);
    return;
  }
  TensorImpl* in[2] = {m.grad_.get(), g.get()};
  call_into(kOp_add, in, 2, default_attrs(), m.grad_.get());
}

void check_saved(const Node& n) {
  if (!n.saved_mask_) return;
  if (n.freed_)
    fail(TSR_ERR_RUNTIME,
         std::string("[") + n.name() +
             "] trying to backward through the graph a second time, but its saved state has been "
             "freed by the first backward; pass retain_graph=1 to the first backward");
  for (int i = 0; i < kNumSaved; ++i) {
    const SavedTensor& s = n.saved_[i];
    if (!(n.saved_mask_ >> i & 1) || s.t_->version() == s.version_) continue;
    std::string which = i == kSavedOutput ? "output"
                        : i >= kSavedAux  ? "output " + std::to_string(i - kSavedAux + 1)
                                          : "input " + std::to_string(i);
    fail(TSR_ERR_RUNTIME, std::string("[") + n.name() + "] a tensor saved for backward (" + which + ", " +
                              describe(*s.t_) + ") was modified in place (version " +
                              std::to_string(s.t_->version()) + ", saved at " + std::to_string(s.version_) +
                              ")");
  }
}

// Every gradient a rule returns has its input's shape, dtype and device.
void conform(const Node& n, Tensor* gi) {
  for (int32_t i = 0; i < n.num_inputs_; ++i) {
    if (!n.needs(i)) {
      gi[i] = Tensor();
      continue;
    }
    if (!gi[i]) continue;
    const InputMeta& im = n.in_[i];
    if (gi[i]->ndim_ != im.ndim_ || !std::equal(im.sizes_, im.sizes_ + im.ndim_, gi[i]->sizes_))
      fail(TSR_ERR_RUNTIME, std::string("[") + n.name() + "] produced a gradient of shape " +
                                shape_str(gi[i]->sizes_, gi[i]->ndim_) + " for input " + std::to_string(i) +
                                " of shape " + shape_str(im.sizes_, im.ndim_));
    if (gi[i]->dtype_ != im.dtype_ || gi[i]->device_.type != im.device_.type ||
        gi[i]->device_.index != im.device_.index)
      gi[i] = to(*gi[i], im.device_, im.dtype_);
  }
}

// The gradient seeding root r: grads[r] (shape checked, converted to the root's dtype and
// device), or 1 for a one-element root.
Tensor seed(TensorImpl& root, TensorImpl* grad, int32_t r, const char* fn) {
  auto which = [&] {
    return std::string("[") + fn + "] root " + std::to_string(r) + " (" + describe(root) + ")";
  };
  if (!meta_requires_grad(meta(root)))
    fail(TSR_ERR_RUNTIME, which() + " does not require grad and has no grad_fn");
  if (!grad) {
    if (root.numel() != 1)
      fail(TSR_ERR_INVALID_ARGUMENT, which() +
                                         " is not a one-element tensor: backward needs an explicit gradient "
                                         "(grad can be implicitly created only for one-element roots)");
    return full(root.sizes_, root.ndim_, root.dtype_, root.device_, tsr_scalar_float(1));
  }
  if (grad->ndim_ != root.ndim_ || !std::equal(root.sizes_, root.sizes_ + root.ndim_, grad->sizes_))
    fail(TSR_ERR_INVALID_ARGUMENT,
         which() + " was given a gradient of shape " + shape_str(grad->sizes_, grad->ndim_));
  return to(*grad, root.device_, root.dtype_);
}

// Runs backward from the roots. captured == null: accumulate into .grad (and retain_grad
// tensors); else captured[k] receives the gradient of targets[k] and no .grad is touched.
void run_backward(TensorImpl* const* roots, TensorImpl* const* grads, int32_t nroots, bool retain_graph,
                  const Target* targets, int32_t ntargets, Tensor* captured, const char* fn) {
  NoGradGuard no_grad;
  const bool to_leaves = captured == nullptr;
  std::vector<Tensor> seeds(static_cast<size_t>(nroots));
  for (int32_t r = 0; r < nroots; ++r) seeds[r] = seed(*roots[r], grads ? grads[r] : nullptr, r, fn);

  // Discover the nodes reachable from the roots and count the edges into each.
  std::unordered_map<Node*, int32_t> index;
  std::vector<NodeTask> tasks;
  std::vector<int32_t> stack;
  auto visit = [&](Node* n) {
    auto [it, fresh] = index.try_emplace(n, static_cast<int32_t>(tasks.size()));
    if (fresh) {
      tasks.emplace_back(n);
      stack.push_back(it->second);
    }
    return it->second;
  };
  for (int32_t r = 0; r < nroots; ++r)
    if (Node* n = meta(*roots[r])->grad_fn_) visit(n);
  while (!stack.empty()) {
    int32_t t = stack.back();
    stack.pop_back();
    Node* n = tasks[t].node;
    for (int32_t i = 0; i < n->num_inputs_; ++i)
      if (Node* c = n->next_[i].fn_) {
        int32_t ci = visit(c);
        tasks[t].child[i] = ci;
        ++tasks[ci].deps;
      }
  }

  auto leaf_target = [&](const AutogradMeta* leaf) {
    for (int32_t k = 0; k < ntargets; ++k)
      if (targets[k].leaf == leaf) return k;
    return -1;
  };
  // grad_of: run only the nodes through which a requested input is reached (reverse
  // topological order: every child is decided before its parents).
  if (!to_leaves) {
    std::vector<int32_t> deps(tasks.size()), order;
    for (size_t t = 0; t < tasks.size(); ++t)
      if ((deps[t] = tasks[t].deps) == 0) stack.push_back(static_cast<int32_t>(t));
    while (!stack.empty()) {
      int32_t t = stack.back();
      stack.pop_back();
      order.push_back(t);
      for (int32_t c : tasks[t].child)
        if (c >= 0 && --deps[c] == 0) stack.push_back(c);
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      NodeTask& task = tasks[*it];
      bool needed = false;
      for (int32_t k = 0; k < ntargets; ++k) needed |= targets[k].node == task.node;
      for (int32_t i = 0; i < task.node->num_inputs_; ++i) {
        int32_t c = task.child[i];
        needed |= c >= 0 ? tasks[c].needed
                         : task.node->next_[i].leaf_ && leaf_target(task.node->next_[i].leaf_) >= 0;
      }
      task.needed = needed;
    }
  }

  auto to_leaf = [&](AutogradMeta* leaf, Tensor g) {
    if (to_leaves) {
      if (leaf->requires_grad_) accumulate(*leaf, std::move(g));
    } else if (int32_t k = leaf_target(leaf); k >= 0) {
      add_into(captured[k], std::move(g));
    }
  };
  for (int32_t r = 0; r < nroots; ++r) {
    AutogradMeta* m = meta(*roots[r]);
    if (m->grad_fn_)
      add_into(tasks[index[m->grad_fn_]].grad, std::move(seeds[r]));
    else
      to_leaf(m, std::move(seeds[r]));
  }

  for (size_t t = 0; t < tasks.size(); ++t)
    if (tasks[t].deps == 0) stack.push_back(static_cast<int32_t>(t));
  while (!stack.empty()) {
    NodeTask& task = tasks[stack.back()];
    stack.pop_back();
    Node& n = *task.node;
    Tensor g = std::move(task.grad);
    Tensor gi[3];
    if (g) {
      if (to_leaves && n.retained_) accumulate(*n.retained_, g);
      for (int32_t k = 0; k < ntargets; ++k)
        if (targets[k].node == &n) add_into(captured[k], g);
      if (task.needed) {
        check_saved(n);
        kRules[n.op_](n, g, gi);
        conform(n, gi);
        if (!retain_graph && n.saved_mask_) {
          n.release_saved();
          n.freed_ = true;
        }
      }
    }
    for (int32_t i = 0; i < n.num_inputs_; ++i) {
      if (int32_t c = task.child[i]; c >= 0) {
        if (gi[i]) add_into(tasks[c].grad, std::move(gi[i]));
        if (--tasks[c].deps == 0) stack.push_back(c);
      } else if (n.next_[i].leaf_ && gi[i]) {
        to_leaf(n.next_[i].leaf_, std::move(gi[i]));
      }
    }
  }
}

}  // namespace

void backward(TensorImpl* const* roots, TensorImpl* const* grads, int32_t num_roots, bool retain_graph) {
  run_backward(roots, grads, num_roots, retain_graph, nullptr, 0, nullptr, "backward");
}

void grad_of(TensorImpl* const* roots, TensorImpl* const* grads, int32_t num_roots, TensorImpl* const* inputs,
             int32_t num_inputs, bool retain_graph, bool allow_unused, TensorImpl** outputs) {
  std::vector<Target> targets(static_cast<size_t>(num_inputs));
  for (int32_t k = 0; k < num_inputs; ++k) {
    AutogradMeta* m = meta(*inputs[k]);
    if (!meta_requires_grad(m))
      fail(TSR_ERR_RUNTIME, "[autograd_grad] input " + std::to_string(k) + " (" + describe(*inputs[k]) +
                                ") does not require grad");
    targets[k] = m->grad_fn_ ? Target{m->grad_fn_, nullptr} : Target{nullptr, m};
  }
  std::vector<Tensor> captured(static_cast<size_t>(num_inputs));
  run_backward(roots, grads, num_roots, retain_graph, targets.data(), num_inputs, captured.data(),
               "autograd_grad");
  for (int32_t k = 0; k < num_inputs; ++k)
    if (!captured[k] && !allow_unused)
      fail(TSR_ERR_RUNTIME, "[autograd_grad] input " + std::to_string(k) + " (" + describe(*inputs[k]) +
                                ") is not reached from the roots (pass allow_unused)");
  NoGradGuard no_grad;
  for (int32_t k = 0; k < num_inputs; ++k) {
    Tensor& g = captured[k];
    if (g && !stealable(g)) g = clone(*g);  // the caller gets a tensor of its own
    outputs[k] = g.release();
  }
}

// ---- the tensor-level API ---------------------------------------------------------------------

void set_requires_grad(TensorImpl& t, bool requires_grad) {
  AutogradMeta* m = meta(t);
  if (m && m->grad_fn_) {
    if (!requires_grad)
      fail(TSR_ERR_RUNTIME, "[requires_grad_] only leaf tensors can have requires_grad turned off (" +
                                describe(t) + " was made by " + m->grad_fn_->name() + "); use detach()");
    return;
  }
  if (requires_grad && !is_floating(t.dtype_))
    fail(TSR_ERR_TYPE, "[requires_grad_] only tensors of a floating point dtype can require gradients, got " +
                           dtype_str(t.dtype_) + " (" + describe(t) + ")");
  if (m || requires_grad) ensure_meta(t).requires_grad_ = requires_grad;
}

bool requires_grad(const TensorImpl& t) {
  return meta_requires_grad(meta(t));
}

bool is_leaf(const TensorImpl& t) {
  return !meta(t) || !meta(t)->grad_fn_;
}

Tensor grad(TensorImpl& t) {
  AutogradMeta* m = meta(t);
  if (!m) return Tensor();
  std::lock_guard<std::mutex> lock(m->grad_mutex_);
  return m->grad_;
}

void set_grad(TensorImpl& t, TensorImpl* g) {
  if (g) {
    if (g->ndim_ != t.ndim_ || !std::equal(t.sizes_, t.sizes_ + t.ndim_, g->sizes_))
      fail(TSR_ERR_INVALID_ARGUMENT,
           "[set_grad] gradient " + describe(*g) + " does not match the tensor " + describe(t));
    if (g->dtype_ != t.dtype_ || g->device_.type != t.device_.type || g->device_.index != t.device_.index)
      fail(TSR_ERR_TYPE, "[set_grad] gradient " + describe(*g) + " does not match the tensor " + describe(t));
  } else if (!meta(t)) {
    return;
  }
  AutogradMeta& m = ensure_meta(t);
  Tensor keep = g ? Tensor::retain(g) : Tensor();
  std::lock_guard<std::mutex> lock(m.grad_mutex_);
  std::swap(m.grad_, keep);
}

void retain_grad(TensorImpl& t) {
  AutogradMeta* m = meta(t);
  if (!meta_requires_grad(m))
    fail(TSR_ERR_RUNTIME, "[retain_grad] can't retain the gradient of a tensor that does not require grad (" +
                              describe(t) + ")");
  if (!m->grad_fn_ || m->retains_grad_) return;
  m->retains_grad_ = true;
  m->retain();
  m->grad_fn_->retained_ = m;
}

Tensor detach(TensorImpl& t) {
  return make_view(t, t.sizes_, t.strides_, t.ndim_, t.offset_);
}

const char* grad_fn_name(const TensorImpl& t) {
  AutogradMeta* m = meta(t);
  return m && m->grad_fn_ ? m->grad_fn_->name() : nullptr;
}

}  // namespace tessera::autograd
