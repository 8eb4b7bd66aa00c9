// The requirements fisher_unlearn places on user types, built from small named pieces so that a
// compiler error names the piece that failed (for example "HasSampleGradient" when a model has no
// gradient member). Documentation with skeleton classes: docs/model_concept.md.
#pragma once

#include "fisher_unlearn/tokenizer.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>

#include <concepts>
#include <cstddef>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fisher_unlearn {

struct UnlearningReport;  // report.hpp

// ================================================================================================
// Model: the user-supplied model.
//
// Rules the compiler cannot check:
//  * num_parameters() and the size of parameters() are fixed for the object's lifetime.
//  * loss(s) and gradient(s, g) are pure functions of (parameters, s): no hidden state changes.
//  * gradient(s, g) overwrites g (size num_parameters()) with the derivative of loss(s) with respect
//    to parameters(), and returns loss(s). It must not allocate per call on the hot path if it can
//    avoid it; the caller owns g.
//  * The training objective over a set S is  J_S(θ) = mean_{s∈S} loss(s) + (λ/2)‖θ‖²  where λ is
//    l2_regularization() for a RegularizedModel and 0 otherwise. Per-sample losses therefore
//    EXCLUDE the regulariser; the library adds it (detail/model_ops.hpp).
// ================================================================================================

template <class M>
concept HasScalarType = requires { typename M::Scalar; } && SupportedScalar<typename M::Scalar>;

template <class M>
concept HasSampleType = requires { typename M::Sample; };

template <class M>
concept HasParameterCount = requires(const M& m) {
  { m.num_parameters() } -> std::convertible_to<std::size_t>;
};

template <class M>
concept HasParameterView = HasScalarType<M> && requires(M& m, const M& cm) {
  { m.parameters() } -> std::convertible_to<std::span<typename M::Scalar>>;
  { cm.parameters() } -> std::convertible_to<std::span<const typename M::Scalar>>;
};

template <class M>
concept HasSampleLoss = HasScalarType<M> && HasSampleType<M> &&
    requires(const M& m, const typename M::Sample& s) {
      { m.loss(s) } -> std::convertible_to<typename M::Scalar>;
    };

/// A model with parameters and a per-sample loss. Every algorithm needs at least this.
template <class M>
concept Model = HasScalarType<M> && HasSampleType<M> && HasParameterCount<M> && HasParameterView<M> &&
                HasSampleLoss<M>;

template <class M>
concept HasSampleGradient = HasScalarType<M> && HasSampleType<M> &&
    requires(const M& m, const typename M::Sample& s, std::span<typename M::Scalar> g) {
      { m.gradient(s, g) } -> std::convertible_to<typename M::Scalar>;
    };

/// A model with per-sample gradients: what every Fisher estimator and unlearner needs.
template <class M>
concept DifferentiableModel = Model<M> && HasSampleGradient<M>;

// ---- optional refinements, detected where present ------------------------------------------------

/// sum_loss_and_gradient(batch, g): overwrites g with Σ_s ∇loss(s) and returns Σ_s loss(s).
/// Lets a model vectorise over a batch; the library falls back to a loop over gradient() otherwise.
template <class M>
concept BatchDifferentiableModel = DifferentiableModel<M> &&
    requires(const M& m, std::span<const typename M::Sample> batch, std::span<typename M::Scalar> g) {
      { m.sum_loss_and_gradient(batch, g) } -> std::convertible_to<typename M::Scalar>;
    };

/// hessian_vector_product(batch, v, out): out = Σ_s ∇²loss(s) · v (regulariser excluded).
template <class M>
concept HasHessianVectorProduct = HasScalarType<M> && HasSampleType<M> &&
    requires(const M& m, std::span<const typename M::Sample> batch, std::span<const typename M::Scalar> v,
             std::span<typename M::Scalar> out) { m.hessian_vector_product(batch, v, out); };

/// hessian(batch, h): resizes h to d×d and sets it to Σ_s ∇²loss(s) (regulariser excluded).
template <class M>
concept HasDenseHessian = HasScalarType<M> && HasSampleType<M> &&
    requires(const M& m, std::span<const typename M::Sample> batch, Matrix<typename M::Scalar>& h) {
      m.hessian(batch, h);
    };

/// A model whose exact curvature is available: what NewtonRemoval needs.
template <class M>
concept TwiceDifferentiableModel = DifferentiableModel<M> && (HasHessianVectorProduct<M> || HasDenseHessian<M>);

/// sampled_gradient(s, rng, g): overwrites g with ∇_θ[−log p(ŷ | x_s; θ)] for a target ŷ drawn from
/// the model's own predictive distribution p(· | x_s; θ) using rng. E_ŷ[g gᵀ] is the true Fisher,
/// which equals the Gauss–Newton matrix for exponential-family outputs: what a Monte-Carlo Fisher needs.
/// For a loss that is c × a sum of NLL terms (a sequence loss), E[g gᵀ] is c times the Gauss–Newton
/// matrix of loss(s): such a model declares c through HasLossScale (below).
template <class M>
concept SampledFisherModel = DifferentiableModel<M> &&
    requires(const M& m, const typename M::Sample& s, std::mt19937_64& rng, std::span<typename M::Scalar> g) {
      m.sampled_gradient(s, rng, g);
    };

/// loss_scale(s): the factor c > 0 of a per-sample loss that is a weighted sum of conditionally
/// independent negative log-likelihood terms,  loss(s) = c · Σₜ wₜ ℓₜ(θ),  for instance a sequence loss
/// averaged over its T target tokens (c = 1/T; c = 1/Σₜwₜ with weights). Rules the compiler cannot check:
///  * sampled_gradient(s) (when present) draws the T targets independently and returns
///    c · Σₜ √wₜ ∇ℓₜ(ŷₜ), so that E[g gᵀ] = c · G(s) with G(s) = c Σₜ wₜ Gₜ the Gauss–Newton matrix of
///    loss(s) (for 0/1 weights this is exactly ∇loss at the drawn targets).
///  * collect_gradients multiplies every collected gradient by 1/√c, so that E[F_MC] = the Gauss–Newton
///    matrix of the objective (not c times it). A model without loss_scale has c = 1 (one target per sample).
template <class M>
concept HasLossScale = HasScalarType<M> && HasSampleType<M> && requires(const M& m, const typename M::Sample& s) {
  { m.loss_scale(s) } -> std::convertible_to<typename M::Scalar>;
};

/// l2_regularization(): λ in J_S(θ) = mean loss + (λ/2)‖θ‖².
template <class M>
concept RegularizedModel = Model<M> && requires(const M& m) {
  { m.l2_regularization() } -> std::convertible_to<typename M::Scalar>;
};

/// parameter_groups(): named contiguous ranges of parameters() ("block3", "embedding", "head"), so
/// that unlearning can be restricted to a subset without copying the model.
template <class M>
concept HasParameterGroups = Model<M> && requires(const M& m) {
  { *std::begin(m.parameter_groups()) } -> std::convertible_to<ParameterGroup>;
};

// ================================================================================================
// LinearLayerModel (optional): a model that exposes its linear layers y = W a + b to Kronecker-factored
// curvature (K-FAC / EK-FAC, fisher/kfac.hpp). docs/model_concept.md#linearlayermodel.
//
//   linear_layers() -> std::vector<LinearLayer>: where each layer's W (out×in) and b sit in parameters().
//   visit_linear_layers(samples, targets, rng, visitor): runs forward + backward over `samples` and hands
//     the visitor, per layer and per batch of samples, the inputs a_t (in×n, one column per position t,
//     WITHOUT a constant-1 row: the estimator appends it for a layer with bias) and the output gradients
//     δ_t (out×n) at those positions; optionally (visitor.wants_sample_gradients()) each sample's whole
//     score vector g̃ (size num_parameters()), for the parameters outside every linear layer (a visitor
//     whose wants_linear_layer_scores() is false lets the model skip the linear layers' entries of g̃).
//
// The scale rule (what makes E[K-FAC] the Gauss–Newton matrix): if loss(s) = Σₜ cₜ ℓₜ with ℓₜ the NLL of
// target t (cₜ = 1/T for a mean over T tokens; 1 for a single-target classifier), the backward pass is
// seeded with √cₜ·∂ℓₜ/∂logits, i.e. δ and g̃ are those of Σₜ √cₜ ℓₜ. With targets drawn from the model
// (CurvatureTargets::sampled, independently per target) the cross terms vanish and
//   E[g̃ g̃ᵀ] = Σₜ cₜ Fₜ = the Gauss–Newton matrix of loss(s)            (Fₜ: Fisher of target t)
// exactly, whereas E[∇loss ∇lossᵀ] = Σₜ cₜ² Fₜ would be T times too small for a mean. The layer gradient
// of g̃ is Σ over the sample's columns of δₜ [aₜ; 1]ᵀ.
//
// Rules the compiler cannot check: the layers' parameter ranges do not overlap and lie inside
// parameters(); linear_layers() is fixed for the object's lifetime; visit_linear_layers is const (it does
// not change the parameters), visits samples in order, and with `sampled` consumes rng exactly as
// successive sampled_gradient() calls on the same samples would (same seed ⇒ same targets); the views
// handed to the visitor are valid only during the call.
// ================================================================================================

/// Memory order of a layer's weight W (out×in) inside parameters().
enum class WeightOrder {
  column_major,  ///< W(o, i) at weight_offset + i·out + o (Eigen's default: the Mlp and Transformer)
  row_major,     ///< W(o, i) at weight_offset + o·in + i (PyTorch's nn.Linear)
};

/// One linear layer y = W a + b of a LinearLayerModel.
struct LinearLayer {
  std::string name;               ///< "block0.qkv", "layer1", ...
  std::size_t in_features = 0;    ///< columns of W (the layer's input size)
  std::size_t out_features = 0;   ///< rows of W
  std::size_t weight_offset = 0;  ///< first entry of W in parameters()
  WeightOrder weight_order = WeightOrder::column_major;
  bool has_bias = false;
  std::size_t bias_offset = 0;    ///< first entry of b (out_features entries) when has_bias
};

/// Which targets the backward pass of visit_linear_layers uses.
enum class CurvatureTargets {
  observed,  ///< the sample's own targets: the empirical Fisher
  sampled,   ///< targets drawn from the model's predictive distribution with the caller's rng: the true Fisher
};

/// What a model hands the visitor for one linear layer over one batch of consecutive samples.
template <SupportedScalar Scalar>
struct LinearLayerBatch {
  using View = Eigen::Map<const Matrix<Scalar>, 0, Eigen::OuterStride<>>;
  std::size_t layer;                              ///< index into linear_layers()
  std::size_t first_sample;                       ///< index of the batch's first sample in `samples`
  std::span<const Eigen::Index> sample_columns;   ///< k+1 offsets: sample first_sample+j owns columns [c_j, c_{j+1})
  View activations;                               ///< in×n: the layer's inputs aₜ (no bias row)
  View output_gradients;                          ///< out×n: δₜ, scaled by the rule above
};

/// Receives the statistics of visit_linear_layers. Override on_layer; override the other two to also
/// receive each sample's whole (scaled) score vector.
template <SupportedScalar Scalar>
class LinearLayerVisitor {
 public:
  virtual ~LinearLayerVisitor() = default;
  virtual void on_layer(const LinearLayerBatch<Scalar>& batch) = 0;
  /// When true, the model also calls on_sample_gradient once per sample (it may batch less for that).
  virtual bool wants_sample_gradients() const { return false; }
  /// When false, the visitor reads the score vectors of on_sample_gradient only outside every linear
  /// layer (the layers' statistics come through on_layer): the model may leave the entries of the linear
  /// layers' weights and biases unspecified there and skip computing them (their weight-gradient GEMMs are
  /// about a third of a backward pass). Without sample gradients a model need compute no parameter
  /// gradient for the visitor at all. The K-FAC and EK-FAC visitors return false.
  virtual bool wants_linear_layer_scores() const { return true; }
  virtual void on_sample_gradient(std::size_t /*sample*/, std::span<const Scalar> /*score*/) {}
};

template <class M>
concept HasLinearLayers = requires(const M& m) {
  { m.linear_layers() } -> std::convertible_to<std::vector<LinearLayer>>;
};

template <class M>
concept HasLinearLayerStatistics = HasScalarType<M> && HasSampleType<M> &&
    requires(const M& m, std::span<const typename M::Sample> samples, CurvatureTargets targets, std::mt19937_64& rng,
             LinearLayerVisitor<typename M::Scalar>& visitor) {
      m.visit_linear_layers(samples, targets, rng, visitor);
    };

/// A differentiable model whose linear layers' inputs and output gradients K-FAC/EK-FAC can read.
template <class M>
concept LinearLayerModel = DifferentiableModel<M> && HasLinearLayers<M> && HasLinearLayerStatistics<M>;

// ================================================================================================
// FisherEstimator: holds (a structured form of) F = damping·I + (1/m) Σᵢ gᵢgᵢᵀ.
//
// Protocol: add_gradient()/add_gradients() any number of times, finalize(), then apply_power() as
// often as wanted. apply_power before finalize, or after gradients were added since, throws
// StateError. set_damping() changes λ without needing another finalize(). out must not alias v.
// Gradients in add_gradients are the COLUMNS of a d×m matrix (contiguous per gradient in Eigen).
// supports_power(p) says whether F^p v is exact (or defined) for that p in this structure.
// ================================================================================================
template <class E>
concept FisherEstimator = requires { typename E::Scalar; } && SupportedScalar<typename E::Scalar> &&
    requires(E& e, const E& ce, Eigen::Ref<const Vector<typename E::Scalar>> v,
             Eigen::Ref<const Matrix<typename E::Scalar>> gradients, Eigen::Ref<Vector<typename E::Scalar>> out,
             double power, typename E::Scalar damping) {
      { ce.dimension() } -> std::convertible_to<std::size_t>;
      e.add_gradient(v);
      e.add_gradients(gradients);
      e.finalize();
      ce.apply_power(power, v, out);
      { ce.supports_power(power) } -> std::convertible_to<bool>;
      { ce.damping() } -> std::convertible_to<typename E::Scalar>;
      e.set_damping(damping);
      { ce.memory_bytes() } -> std::convertible_to<std::size_t>;
      { ce.num_gradients() } -> std::convertible_to<std::size_t>;
      e.clear();
    };

// ================================================================================================
// LayerFactoredEstimator: a FisherEstimator whose statistics come from a LinearLayerModel's layers
// (inputs and output gradients), not from flat gradients — KfacFisher and EkfacFisher (fisher/kfac.hpp).
//   E(layers, dimension, damping): an empty estimator for the model's linear_layers() and num_parameters().
//   e.accumulate(model, samples, how): adds the statistics of samples (GradientCollection, collect.hpp);
//     a template over the model, so checked where it is called, not here.
//   ce.undamped_trace(): tr of the undamped matrix, for damping relative to the spectrum (damping.hpp).
// Unlearners that build F_R themselves (NaturalGradientUnlearning) use this route for such estimators.
// ================================================================================================
template <class E>
concept LayerFactoredEstimator = FisherEstimator<E> &&
    std::constructible_from<E, std::vector<LinearLayer>, std::size_t, typename E::Scalar> &&
    requires(const E& ce) {
      { ce.undamped_trace() } -> std::convertible_to<double>;
    };

// ================================================================================================
// NewtonUnlearner (the design's name for every unlearner, first- or second-order): moves a model's
// parameters so that it forgets `forget`, using `retain` for curvature or repair, and reports what it
// did. Strong guarantee: if unlearn throws, model.parameters() are unchanged.
// ================================================================================================
template <class U, class M>
concept NewtonUnlearner = DifferentiableModel<M> &&
    requires(const U& u, M& model, std::span<const typename M::Sample> forget,
             std::span<const typename M::Sample> retain) {
      { u.unlearn(model, forget, retain) } -> std::same_as<UnlearningReport>;
      { u.name() } -> std::convertible_to<std::string>;
    };

// ================================================================================================
// LanguageModel: anything that scores tokens. Exposure (exposure.hpp) and greedy extraction
// (membership.hpp) need only this: a Scalar type, vocab_size() and next_token_log_probs. It does NOT
// require the Model concept (parameters, Sample, loss): a frozen or remote model, or a wrapper around
// another library's model, can be measured without exposing its parameters.
//   Scalar: float or double (the log-probabilities' type; exposure sums them in double).
//   vocab_size(): number of tokens.
//   next_token_log_probs(context, out): out[v] = log p(v | context) (natural log), out.size() ==
//   vocab_size(); context may be empty only if the model defines p(· | ∅).
// IncrementalLanguageModel adds decoding state (a KV cache, say) so that scoring a tree of
// continuations does not re-run shared prefixes:
//   begin_decode(context) -> DecodeState having consumed context (copyable: a tree walk copies it);
//   advance(state, token) appends one token; log_probs(state, out) = log p(· | all consumed tokens).
// ================================================================================================
template <class M>
concept HasVocabulary = requires(const M& m) {
  { m.vocab_size() } -> std::convertible_to<std::size_t>;
};

template <class M>
concept HasNextTokenLogProbs = HasScalarType<M> &&
    requires(const M& m, std::span<const Token> context, std::span<typename M::Scalar> out) {
      m.next_token_log_probs(context, out);
    };

template <class M>
concept LanguageModel = HasScalarType<M> && HasVocabulary<M> && HasNextTokenLogProbs<M>;

template <class M>
concept IncrementalLanguageModel = LanguageModel<M> && std::copyable<typename M::DecodeState> &&
    requires(const M& m, typename M::DecodeState& state, const typename M::DecodeState& cstate,
             std::span<const Token> context, Token token, std::span<typename M::Scalar> out) {
      { m.begin_decode(context) } -> std::same_as<typename M::DecodeState>;
      m.advance(state, token);
      m.log_probs(cstate, out);
    };

// ---- ExposureMetric: see exposure.hpp (issue: exposure metrics) ---------------------------------
// measure(model, space, canary) ranks the canary among every candidate of the space (a canary format
// bound to a tokenizer) and reports exposure in bits and the rank; name() says which estimator.
// Rules the compiler cannot check: measure leaves the model unchanged, uses the single definition
// written in exposure.hpp (log-perplexity = −log₂ P(secret | prefix), rank = 1 + #strictly more
// likely, exposure = log₂|R| − log₂ rank), and is deterministic for a fixed seed.
struct Canary;          // canary.hpp
class CanarySpace;      // canary.hpp
struct ExposureResult;  // exposure.hpp

template <class E, class M>
concept ExposureMetric = LanguageModel<M> &&
    requires(const E& e, const M& model, const CanarySpace& space, const Canary& canary) {
      { e.measure(model, space, canary) } -> std::same_as<ExposureResult>;
      { e.name() } -> std::convertible_to<std::string>;
    };

}  // namespace fisher_unlearn
