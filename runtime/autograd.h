// Reverse-mode autograd (DESIGN §4): the metadata behind TensorImpl::autograd_, the graph's
// nodes and edges, per-thread grad mode, recording in the dispatcher, and the engine.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "op_table.h"
#include "tensor.h"

namespace tessera::autograd {

struct Node;
struct AutogradMeta;

// Where an input's gradient goes: the node that made it, the leaf it is, or nowhere (both null).
// Both pointers hold a reference.
struct Edge {
  Node* fn_ = nullptr;
  AutogradMeta* leaf_ = nullptr;
  explicit operator bool() const { return fn_ || leaf_; }
};

// Autograd state of one tensor (its autograd_; null when it never needed any). Refcounted:
// the tensor holds one reference, edges to a leaf and a node's retain_grad slot the others.
// Invariant: a leaf has grad_fn_ == nullptr; a non-leaf requires grad.
struct AutogradMeta {
  std::atomic<int32_t> refcount_{1};
  bool requires_grad_ = false;  // set by requires_grad_() on leaves
  bool retains_grad_ = false;   // retain_grad() on a non-leaf
  Node* grad_fn_ = nullptr;     // the node that made the tensor (a reference); null for leaves
  std::mutex grad_mutex_;       // guards grad_: leaves may be accumulated from several threads
  Tensor grad_;                 // .grad

  void retain() { refcount_.fetch_add(1, std::memory_order_relaxed); }
  void release() {
    if (refcount_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }
  void destroy();
};

// What a backward rule knows about one tensor input of the forward op.
struct InputMeta {
  int64_t sizes_[TSR_MAX_DIMS];
  int32_t ndim_;
  int32_t dtype_;
  TsrDevice device_;
};

// A tensor kept for backward and the storage version it had then.
struct SavedTensor {
  TensorImpl* t_ = nullptr;  // a reference; an op's own output is kept as a detached alias
  uint64_t version_ = 0;
};

// Saved-tensor slots: inputs 0..2, then the output, then the op's auxiliary outputs 1 and 2
// (layer_norm's mean and rstd, attention's and cross_entropy's log-sum-exp, topk's indices).
inline constexpr int kSavedOutput = 3;
inline constexpr int kSavedAux = 4;
inline constexpr int kNumSaved = 6;
inline constexpr uint32_t kSaveOut = 1u << kSavedOutput;
inline constexpr uint32_t kSaveAux1 = 1u << kSavedAux;
inline constexpr uint32_t kSaveAux2 = 1u << (kSavedAux + 1);

// One recorded op. One allocation per recorded op; the rule is found by op id.
struct Node {
  std::atomic<int32_t> refcount_{1};
  int32_t op_ = 0;
  int32_t num_inputs_ = 0;
  uint32_t saved_mask_ = 0;  // which saved_ slots were filled
  bool freed_ = false;       // saved tensors released by a backward without retain_graph
  Edge next_[3];             // per tensor input
  InputMeta in_[3];
  SavedTensor saved_[kNumSaved];
  int64_t in_strides_[TSR_MAX_DIMS];  // as_strided only: input 0's strides and storage offset
  int64_t in_offset_ = 0;
  AutogradMeta* retained_ = nullptr;  // retain_grad(): the output's metadata (a reference)
  TsrAttrs attrs_;                    // the forward call's attrs, as the host gave them

  void retain() { refcount_.fetch_add(1, std::memory_order_relaxed); }
  void release() {
    if (refcount_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }
  void destroy();
  void release_saved();

  bool needs(int i) const { return static_cast<bool>(next_[i]); }
  // Saved slot i (input i, kSavedOutput, kSavedAux + j). Checked for version and release by the engine.
  TensorImpl& saved(int i) const { return *saved_[i].t_; }
  const char* name() const;
};

// The gradients of a node's inputs from the gradient of its output: grad_inputs[i] for each
// input i with needs(i) (others may stay empty). Written with ops through the dispatcher.
using BackwardFn = void (*)(Node& node, const Tensor& grad, Tensor* grad_inputs);

// One rule per differentiable op of ops.def (backward.cpp): a missing one is a link error.
#define TSR_BW_DECL_1(name) void name##_backward(Node& node, const Tensor& grad, Tensor* grad_inputs);
#define TSR_BW_DECL_0(name)
#define TSR_OP(name, kind, types, diff) TSR_BW_DECL_##diff(name)
#include "tessera/ops.def"
#undef TSR_OP
#undef TSR_BW_DECL_1
#undef TSR_BW_DECL_0

// Which saved_ slots op's rule reads (bits 0..2 inputs, kSaveOut the output), given which
// inputs need a gradient (bit i: input i). backward.cpp, beside the rules.
uint32_t saved_mask(int32_t op, const TsrAttrs& attrs, uint32_t needs);

// ---- grad mode and recording ----------------------------------------------------------

bool grad_enabled();
bool set_grad_enabled(bool enabled);  // returns the previous mode

// Turns grad mode off for its scope (backward rules, recorded forwards).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(set_grad_enabled(false)) {}
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// tessera::call when an input or the given output carries autograd metadata: runs the op
// and records a node when grad mode is on and an input requires grad.
// outputs has the op's natural_outputs slots: outputs[0] gets the node, the others (aux
// outputs: statistics, indices) are kept by the node where its rule reads them.
void record_call(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs,
                 TensorImpl** outputs, int32_t num_outputs = 1);

// Records a node for op's already computed output `out` (views made outside call()) when
// grad mode is on and an input requires grad.
void record_op(int32_t op, TensorImpl* const* inputs, int32_t num_inputs, const TsrAttrs& attrs,
               TensorImpl& out, TensorImpl* const* aux = nullptr, int32_t num_aux = 0);

// Called by TsrTensorImpl::release when the tensor dies.
void release_meta(TensorImpl& t);

// ---- the tensor-level API behind tessera.h's autograd section ---------------------------

void set_requires_grad(TensorImpl& t, bool requires_grad);
bool requires_grad(const TensorImpl& t);
bool is_leaf(const TensorImpl& t);
Tensor grad(TensorImpl& t);                      // empty when none
void set_grad(TensorImpl& t, TensorImpl* grad);  // null clears
void retain_grad(TensorImpl& t);
Tensor detach(TensorImpl& t);
const char* grad_fn_name(const TensorImpl& t);  // null for leaves
void backward(TensorImpl* const* roots, TensorImpl* const* grads, int32_t num_roots, bool retain_graph);
// outputs[i]: the gradient for inputs[i] (owned), or null when unused and allow_unused.
void grad_of(TensorImpl* const* roots, TensorImpl* const* grads, int32_t num_roots, TensorImpl* const* inputs,
             int32_t num_inputs, bool retain_graph, bool allow_unused, TensorImpl** outputs);

}  // namespace tessera::autograd
