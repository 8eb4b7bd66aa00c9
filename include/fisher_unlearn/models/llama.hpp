// A Llama-architecture causal language model (SmolLM2, Llama 2/3 layout as llama.cpp stores it) with an
// exact backward pass over a chosen subset of its tensors:
//   x⁰ = E[tok];  x' = xˡ + W_o·Attn(RoPE(W_q h), RoPE(W_k h), W_v h),  h = RMSNorm(xˡ)·g_attn  (GQA);
//   xˡ⁺¹ = x' + W_down·(silu(W_gate h') ⊙ W_up h'),  h' = RMSNorm(x')·g_ffn;  logits = Eᵀ·RMSNorm(xᴸ)·g_out.
// Cost per token: ≈ 2·(12·L·C² + V·C) flops forward (GQA and F change the constant); backward costs ≈ 2× the
// forward of the blocks above the lowest trainable one. Memory: the weights (fp32/fp64) plus O(T·(6C + 3F)) per
// trained block and position of a chunk, plus V·T for the logits.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/detail/layer_statistics.hpp"
#include "fisher_unlearn/detail/parallel.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/sequence_sample.hpp"
#include "fisher_unlearn/tokenizer.hpp"
#include "fisher_unlearn/types.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fisher_unlearn::models {

/// The architecture of a Llama model (GGUF keys `llama.*` in brackets).
struct LlamaConfig {
  std::size_t vocab_size = 64;        ///< V [tokenizer.ggml.tokens]
  std::size_t context_length = 128;   ///< T_max: longest sequence of input positions [llama.context_length]
  std::size_t num_layers = 2;         ///< L [llama.block_count]
  std::size_t width = 32;             ///< C [llama.embedding_length]
  std::size_t num_heads = 4;          ///< H [llama.attention.head_count]; head_dim = C / H
  std::size_t num_kv_heads = 2;       ///< H_kv [llama.attention.head_count_kv]; divides H (grouped-query attention)
  std::size_t ffn_width = 64;         ///< F [llama.feed_forward_length] (SwiGLU hidden units)
  std::size_t rope_dims = 0;          ///< rotated dimensions per head [llama.rope.dimension_count]; 0 = head_dim
  double rope_base = 10000.0;         ///< RoPE frequency base [llama.rope.freq_base]
  double rms_epsilon = 1e-5;          ///< ε in RMSNorm [llama.attention.layer_norm_rms_epsilon]
  bool tied_embeddings = true;        ///< no separate `output.weight`: logits use token_embd

  std::size_t head_dim() const { return width / num_heads; }
  std::size_t kv_width() const { return num_kv_heads * head_dim(); }
  std::size_t rotated_dims() const { return rope_dims == 0 ? head_dim() : rope_dims; }

  /// Throws InvalidArgument naming the field that is out of range.
  void validate() const {
    auto require = [](bool ok, const std::string& what) {
      if (!ok) throw InvalidArgument("LlamaConfig: " + what);
    };
    require(vocab_size >= 2 && vocab_size <= (1u << 24), "vocab_size must be in [2, 2^24]");
    require(context_length >= 1 && context_length <= (1u << 20), "context_length must be in [1, 2^20]");
    require(num_layers >= 1 && num_layers <= 4096, "num_layers must be in [1, 4096]");
    require(width >= 1 && width <= (1u << 16), "width must be in [1, 2^16]");
    require(num_heads >= 1 && width % num_heads == 0,
            "num_heads (" + std::to_string(num_heads) + ") must be positive and divide width (" +
                std::to_string(width) + ")");
    require(num_kv_heads >= 1 && num_heads % num_kv_heads == 0,
            "num_kv_heads (" + std::to_string(num_kv_heads) + ") must be positive and divide num_heads (" +
                std::to_string(num_heads) + ")");
    require(ffn_width >= 1 && ffn_width <= (1u << 18), "ffn_width must be in [1, 2^18]");
    require(rotated_dims() % 2 == 0 && rotated_dims() <= head_dim(),
            "rope_dims (" + std::to_string(rotated_dims()) + ") must be even and at most head_dim (" +
                std::to_string(head_dim()) + ")");
    require(std::isfinite(rope_base) && rope_base > 1.0, "rope_base must be finite and > 1");
    require(std::isfinite(rms_epsilon) && rms_epsilon > 0.0, "rms_epsilon must be finite and > 0");
  }
};

/// How the model spreads work over threads; not part of its identity.
/// Determinism: a batch is cut into chunks of `sequences_per_chunk` consecutive sequences (stacked into one
/// GEMM); thread t handles a contiguous range of chunks and the thread partial sums are added in thread
/// order. Results are bitwise reproducible for a fixed (num_threads, sequences_per_chunk); another thread
/// count changes them by rounding only.
struct LlamaExecution {
  std::size_t num_threads = 1;                     ///< 0 means std::thread::hardware_concurrency()
  std::size_t sequences_per_chunk = 4;             ///< sequences stacked into one GEMM
  std::size_t boundary_cache_bytes = 256u << 20;   ///< memory for cached boundary states; 0 disables the cache
};

/// The tensors of a Llama model, as llama.cpp names them (the GGUF name is `name + ".weight"`).
enum class LlamaTensorKind {
  token_embd, attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down, output_norm,
  output
};

/// One tensor: GGUF shape [rows = ne0, cols = ne1] (ne0 varies fastest), i.e. a column-major rows×cols
/// matrix. A weight W (out×in, y = W x) is stored as its transpose: rows = in, cols = out, exactly the byte
/// order of a GGUF file. Norm gains have cols = 1.
struct LlamaTensor {
  std::string name;  ///< "blk.3.attn_q", "token_embd", "output_norm", ...: also its parameter-group name
  LlamaTensorKind kind = LlamaTensorKind::token_embd;
  int block = -1;    ///< block index, −1 for token_embd / output_norm / output
  std::size_t rows = 0, cols = 0;
  bool trainable = false;
  std::size_t offset = 0;  ///< into the trainable parameter vector or the frozen store
  std::size_t size() const { return rows * cols; }
};

/// The tensor list of a config, in layout order (token_embd, blocks 0..L−1, output_norm[, output]).
inline std::vector<LlamaTensor> llama_tensor_list(const LlamaConfig& c) {
  const std::size_t C = c.width, KV = c.kv_width(), F = c.ffn_width, V = c.vocab_size;
  std::vector<LlamaTensor> t;
  auto add = [&t](std::string name, LlamaTensorKind kind, int block, std::size_t rows, std::size_t cols) {
    LlamaTensor x;
    x.name = std::move(name);
    x.kind = kind;
    x.block = block;
    x.rows = rows;
    x.cols = cols;
    t.push_back(std::move(x));
  };
  add("token_embd", LlamaTensorKind::token_embd, -1, C, V);
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const int b = static_cast<int>(l);
    add(p + "attn_norm", LlamaTensorKind::attn_norm, b, C, 1);
    add(p + "attn_q", LlamaTensorKind::attn_q, b, C, C);
    add(p + "attn_k", LlamaTensorKind::attn_k, b, C, KV);
    add(p + "attn_v", LlamaTensorKind::attn_v, b, C, KV);
    add(p + "attn_output", LlamaTensorKind::attn_output, b, C, C);
    add(p + "ffn_norm", LlamaTensorKind::ffn_norm, b, C, 1);
    add(p + "ffn_gate", LlamaTensorKind::ffn_gate, b, C, F);
    add(p + "ffn_up", LlamaTensorKind::ffn_up, b, C, F);
    add(p + "ffn_down", LlamaTensorKind::ffn_down, b, F, C);
  }
  add("output_norm", LlamaTensorKind::output_norm, -1, C, 1);
  if (!c.tied_embeddings) add("output", LlamaTensorKind::output, -1, C, V);
  return t;
}

/// The group names of the top `k` blocks (every tensor of blk.L−k … blk.L−1) plus output_norm when asked:
/// the usual choice of trainable tensors for unlearning a large model.
inline std::vector<std::string> llama_top_blocks(const LlamaConfig& c, std::size_t k, bool with_output_norm = true) {
  if (k > c.num_layers)
    throw InvalidArgument("llama_top_blocks: asked for " + std::to_string(k) + " blocks but the model has " +
                          std::to_string(c.num_layers));
  std::vector<std::string> names;
  for (std::size_t l = c.num_layers - k; l < c.num_layers; ++l) names.push_back("blk." + std::to_string(l));
  if (with_output_norm) names.push_back("output_norm");
  return names;
}

template <SupportedScalar ScalarType>
class Llama {
 public:
  using Scalar = ScalarType;

  /// One training sequence: tokens[0..n−2] are the inputs (positions 0..n−2), tokens[1..n−1] the targets.
  ///   loss = Σₜ wₜ·ℓₜ,  ℓₜ = −Σ_v qₜ(v)·ln p(v | tokens[0..t])   (qₜ = one-hot of tokens[t+1] unless soft)
  /// wₜ = weights[t], or 1/(n−1) for every t when weights is empty (the mean). Weights must be finite and ≥ 0
  /// (a 0 masks the target: a forget loss on secret tokens) and are NOT normalised: a 0/1 mask sums the NLL
  /// of the masked-in tokens (the Transformer's SequenceSample divides by Σwₜ instead; docs/llama.md).
  /// soft_target / soft_targets: as in SequenceTargets (sequence_sample.hpp) — per position −1 (the observed
  /// token) or an index into the table soft_targets, whose entry replaces the target by that distribution.
  /// Aggregate: Sample{tokens} is the plain next-token sample, Sample{tokens, weights} a weighted one.
  struct Sample {
    std::vector<Token> tokens{};
    std::vector<Scalar> weights{};
    std::vector<std::int32_t> soft_target{};
    std::vector<SoftTarget> soft_targets{};
  };

  /// Incremental decoding state: tokens consumed, per block the rotated keys and the values of every
  /// consumed position (kv_width values per position), and ln p(· | consumed).
  struct DecodeState {
    std::vector<Token> tokens;
    std::vector<std::vector<Scalar>> keys, values;
    std::vector<Scalar> log_probs;
  };

  /// Fills one tensor (span of size rows·cols, GGUF byte order) when a model is built from a file.
  using TensorSource = std::function<void(const LlamaTensor&, std::span<Scalar>)>;

  /// A model with random weights (tests, toy experiments): matrices (embeddings included) N(0, 1/rows), i.e.
  /// N(0, 1/in) for a weight and N(0, 1/C) for an embedding (logits of unit scale), norm gains 1 + N(0, 0.1²). `trainable` names groups: a tensor ("blk.3.attn_q", "token_embd", "output_norm"),
  /// a whole block ("blk.3") or "all".
  Llama(const LlamaConfig& config, const std::vector<std::string>& trainable, std::uint64_t seed)
      : Llama(config, trainable, random_source(seed)) {}

  /// A model whose tensors are filled by `source` (load_llama uses this with a GGUF file).
  Llama(const LlamaConfig& config, const std::vector<std::string>& trainable, const TensorSource& source)
      : config_(checked(config)), tensors_(llama_tensor_list(config_)) {
    select_trainable(trainable);
    auto frozen = std::make_shared<Frozen>();
    std::size_t nt = 0, nf = 0;
    for (auto& t : tensors_) t.offset = t.trainable ? std::exchange(nt, nt + t.size()) : std::exchange(nf, nf + t.size());
    theta_.resize(static_cast<Eigen::Index>(nt));
    frozen->data.resize(nf);
    for (const auto& t : tensors_) {
      std::span<Scalar> out = t.trainable ? std::span<Scalar>(theta_.data() + t.offset, t.size())
                                          : std::span<Scalar>(frozen->data.data() + t.offset, t.size());
      source(t, out);
    }
    frozen_ = std::move(frozen);
    finish_setup();
  }

  /// The same model in another precision (weights rounded); the boundary cache is not shared.
  template <SupportedScalar Other>
  explicit Llama(const Llama<Other>& other)
      : Llama(other.config(), other.trainable_groups(), [&other](const LlamaTensor& t, std::span<Scalar> out) {
          const auto in = other.tensor(t.name);
          for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Scalar>(in[i]);
        }) {
    execution_ = other.execution();
  }

  // Copies share the frozen weights (immutable) and their boundary cache; each gets its own workspaces.
  Llama(const Llama&) = default;
  Llama& operator=(const Llama&) = default;
  Llama(Llama&&) noexcept = default;
  Llama& operator=(Llama&&) noexcept = default;

  // ---- Model ----------------------------------------------------------------------------------------
  const LlamaConfig& config() const { return config_; }
  std::size_t num_parameters() const { return static_cast<std::size_t>(theta_.size()); }
  std::span<Scalar> parameters() { return {theta_.data(), num_parameters()}; }
  std::span<const Scalar> parameters() const { return {theta_.data(), num_parameters()}; }
  std::size_t vocab_size() const { return config_.vocab_size; }
  std::size_t context_length() const { return config_.context_length; }

  /// The trainable tensors, one group each (named like the tensor), in parameter order.
  const std::vector<ParameterGroup>& parameter_groups() const { return groups_; }
  /// The tensor names that are trainable (what the constructor's `trainable` list expanded to).
  const std::vector<std::string>& trainable_groups() const { return trainable_names_; }
  /// Every tensor, trainable or frozen, in layout order.
  const std::vector<LlamaTensor>& tensors() const { return tensors_; }
  /// The lowest block a backward pass reaches: 0 when token_embd is trainable, else the lowest block with a
  /// trainable tensor (num_layers when only output_norm/output train). Boundary states are cached there.
  std::size_t backward_floor() const { return backward_floor_; }

  /// A tensor's values in GGUF byte order (trainable ones alias parameters()). Throws on an unknown name.
  std::span<const Scalar> tensor(std::string_view name) const {
    const LlamaTensor& t = find_tensor(name);
    return {data_of(t), t.size()};
  }

  const LlamaExecution& execution() const { return execution_; }
  void set_execution(const LlamaExecution& e) {
    if (e.sequences_per_chunk == 0) throw InvalidArgument("LlamaExecution: sequences_per_chunk must be >= 1");
    execution_ = e;
  }

  /// Boundary-state cache statistics and control (see the class comment in docs/llama.md).
  struct CacheStatistics {
    std::size_t entries = 0, bytes = 0, hits = 0, misses = 0;
  };
  /// Keeps a transposed copy (out×in, column-major) of every frozen block projection and of a frozen head,
  /// shared by copies made afterwards: the forward's products Wᵀ·h then pack a column-major operand instead
  /// of transposing Wᵀ on the fly (SmolLM2: forward 5 %, top-4 forward + backward 3 % more tokens per
  /// CPU-second, docs/llama.md). Costs one more copy of those weights: +459 MiB (float) for SmolLM2 with the
  /// top 4 blocks trainable (351 MiB of projections, 108 MiB of the tied head). Results are unchanged (the same GEMM kernel sums in the same order; test_llama checks
  /// bitwise equality). Off by default; `false` frees the copies.
  void set_transposed_frozen_weights(bool on) {
    if (!on) {
      frozen_t_.reset();
      return;
    }
    if (frozen_t_) return;
    auto copies = std::make_shared<std::vector<std::vector<Scalar>>>(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const LlamaTensor& t = tensors_[i];
      if (t.trainable || !(is_projection(t) || i == head_index_)) continue;
      auto& dst = (*copies)[i];
      dst.resize(t.size());
      MutMap(dst.data(), static_cast<Index>(t.cols), static_cast<Index>(t.rows)) = weight(t).transpose();
    }
    frozen_t_ = std::move(copies);
  }
  bool transposed_frozen_weights() const { return frozen_t_ != nullptr; }

  CacheStatistics boundary_cache_statistics() const { return frozen_->cache.statistics(); }
  void clear_boundary_cache() const { frozen_->cache.clear(); }

  /// Σₜ wₜℓₜ (the mean over targets when the sample has no weights; ℓₜ a cross-entropy for a soft target).
  Scalar loss(const Sample& s) const {
    check_sample(s);
    auto lease = acquire();
    const Sample* one = &s;
    return run_chunk(*lease, std::span<const Sample* const>(&one, 1), nullptr, Targets::observed, nullptr);
  }

  /// g = ∇loss(s) over the trainable tensors (overwritten); returns loss(s).
  Scalar gradient(const Sample& s, std::span<Scalar> g) const {
    check_sample(s);
    check_out(g.size());
    std::fill(g.begin(), g.end(), Scalar(0));
    auto lease = acquire();
    const Sample* one = &s;
    return run_chunk(*lease, std::span<const Sample* const>(&one, 1), g.data(), Targets::observed, nullptr);
  }

  /// g = Σ_s ∇loss(s) (overwritten); returns Σ_s loss(s). Threads over chunks (see LlamaExecution).
  Scalar sum_loss_and_gradient(std::span<const Sample> batch, std::span<Scalar> g) const {
    check_out(g.size());
    for (const Sample& s : batch) check_sample(s);
    return run_batch(batch, g.data(), Targets::observed, nullptr);
  }

  /// Σ_s loss(s) without gradients, chunked and threaded like sum_loss_and_gradient.
  Scalar sum_loss(std::span<const Sample> batch) const {
    for (const Sample& s : batch) check_sample(s);
    return run_batch(batch, nullptr, Targets::observed, nullptr);
  }

  /// Column i of G (num_parameters() × batch.size(), resized) = ∇loss(batch[i]); threads over samples.
  void per_sample_gradients(std::span<const Sample> batch, Matrix<Scalar>& G) const {
    for (const Sample& s : batch) check_sample(s);
    G.resize(static_cast<Eigen::Index>(num_parameters()), static_cast<Eigen::Index>(batch.size()));
    G.setZero();
    auto work = [&](std::size_t first, std::size_t stride) {
      auto lease = acquire();
      for (std::size_t i = first; i < batch.size(); i += stride) {
        const Sample* one = &batch[i];
        run_chunk(*lease, std::span<const Sample* const>(&one, 1), G.col(static_cast<Eigen::Index>(i)).data(),
                  Targets::observed, nullptr);
      }
    };
    run_parallel(std::min(resolved_threads(), std::max<std::size_t>(batch.size(), 1)), work);
  }

  /// g = √c·∇ Σₜ √wₜ·(−ln p(ŷₜ | tokens[0..t])), c = loss_scale(s), with ŷₜ ~ p(· | tokens[0..t]; θ) drawn at
  /// every position in order (one uniform from rng per position; observed and soft targets are ignored).
  /// E[g gᵀ] = c·Σₜ wₜFₜ = c·G(s), G(s) the Gauss–Newton matrix of loss(s): the HasLossScale contract
  /// (concepts.hpp), which collect_gradients undoes by dividing by √c. For the mean (c = 1/T) this is
  /// exactly ∇loss at the drawn targets; g/√c = ∇Σₜ√wₜℓₜ is the per-token scaled score.
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<Scalar> g) const {
    check_sample(s);
    check_out(g.size());
    std::fill(g.begin(), g.end(), Scalar(0));
    auto lease = acquire();
    const Sample* one = &s;
    run_chunk(*lease, std::span<const Sample* const>(&one, 1), g.data(), Targets::sampled, &rng);
  }

  /// c in loss(s) = c·Σₜ w'ₜℓₜ (HasLossScale): the coefficient every weighted target shares. For the mean
  /// (no weights) c = 1/T; for weights c = Σwₜ²/Σwₜ, which is that common coefficient whenever the
  /// nonzero weights are equal (a 0/1 mask: c = 1) and in general makes the empirical per-sample score
  /// ∇loss/√c = Σₜ(wₜ/√c)∇ℓₜ carry Σₜwₜ of squared coefficient mass, as the per-token rule Σₜ√wₜ∇ℓₜ does
  /// (the Transformer's 1/Σwₜ is the same number for its normalised weights when they are 0/1). 1 when
  /// every weight is 0 (the loss and its gradients are 0).
  Scalar loss_scale(const Sample& s) const {
    check_sample(s);
    return static_cast<Scalar>(scale_of(s));
  }

  // ---- LinearLayerModel (K-FAC / EK-FAC) ------------------------------------------------------------------
  /// The trainable projections of the blocks, in parameter order: "blk.N.attn_q" (C→C), "blk.N.attn_k" and
  /// "blk.N.attn_v" (C→kv_width), "blk.N.attn_output" (C→C), "blk.N.ffn_gate" and "blk.N.ffn_up" (C→F),
  /// "blk.N.ffn_down" (F→C); no bias. A GGUF tensor is Wᵀ in column-major order, i.e. W row-major. The norm
  /// gains, token_embd and an untied `output` (its V×V gradient factor would not fit) are not linear layers
  /// here: a Kronecker estimator treats them as its diagonal block.
  std::vector<LinearLayer> linear_layers() const {
    std::vector<LinearLayer> layers;
    for (const auto& t : tensors_)
      if (is_linear_layer(t))
        layers.push_back({t.name, t.rows, t.cols, t.offset, WeightOrder::row_major, false, 0});
    return layers;
  }

  /// Forward + backward over `samples` (observed targets, or targets drawn with rng exactly as successive
  /// sampled_gradient() calls draw them), handing `visitor` every linear layer's inputs and output gradients
  /// (concepts.hpp, LinearLayerModel). The loss is c·Σₜ wₜℓₜ with c = 1 (wₜ = 1/T for a sample without
  /// weights), so the backward pass is seeded with √wₜ per position, for observed and sampled targets alike:
  /// the implied score is g̃ = ∇ Σₜ √wₜ ℓₜ (√T·∇loss for the mean; sampled_gradient()/√loss_scale(s) for
  /// sampled targets, from the same draws), and E[g̃g̃ᵀ] = Σₜ wₜFₜ is the Gauss–Newton matrix of loss(s).
  /// Soft targets enter the observed pass as √wₜ·(p − qₜ). Positions of weight 0 whose output
  /// gradient is exactly 0 (the top block's q, attn_output and feed-forward; lower blocks still see them
  /// through later positions' attention) are left out of the batch, so they do not dilute A.
  /// Sequences are batched sequences_per_chunk at a time, one at a time when the visitor wants each sample's
  /// score vector (whose linear-layer entries are left 0, their GEMMs skipped, when its
  /// wants_linear_layer_scores() is false). Single-threaded; the visitor is called in sample order.
  void visit_linear_layers(std::span<const Sample> samples, CurvatureTargets targets, std::mt19937_64& rng,
                           LinearLayerVisitor<Scalar>& visitor) const {
    for (const Sample& s : samples) check_sample(s);
    if (samples.empty()) return;
    const bool per_sample = visitor.wants_sample_gradients();
    const std::size_t per = per_sample ? 1 : execution_.sequences_per_chunk;
    std::vector<const Sample*> pointers(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) pointers[i] = &samples[i];
    Vec scratch(static_cast<Index>(num_parameters()));
    auto lease = acquire();
    Workspace& ws = *lease;
    ws.visitor = &visitor;
    try {
      for (std::size_t begin = 0; begin < samples.size(); begin += per) {
        const std::size_t n = std::min(per, samples.size() - begin);
        scratch.setZero();
        ws.first_sample = begin;
        run_chunk(ws, std::span<const Sample* const>(pointers.data() + begin, n), scratch.data(),
                  targets == CurvatureTargets::sampled ? Targets::sampled : Targets::observed, &rng);
        if (per_sample) visitor.on_sample_gradient(begin, std::span<const Scalar>(scratch.data(), num_parameters()));
      }
    } catch (...) {
      ws.visitor = nullptr;
      throw;
    }
    ws.visitor = nullptr;
  }

  // ---- LanguageModel ----------------------------------------------------------------------------------
  /// out[v] = ln p(v | context). The context must be non-empty (prepend BOS yourself if the model wants
  /// one); only its last context_length tokens are used.
  void next_token_log_probs(std::span<const Token> context, std::span<Scalar> out) const {
    if (context.empty())
      throw InvalidArgument("Llama::next_token_log_probs: the context is empty; pass at least one token (the "
                            "BOS token if the model was trained with one)");
    check_vocab_out(out.size());
    const Matrix<Scalar> lp = position_log_probs(context.size() > config_.context_length
                                                     ? context.last(config_.context_length)
                                                     : context,
                                                 /*last_only=*/true);
    as_eigen<Scalar>(out) = lp.col(0);
  }

  /// V×n matrix: column t = ln p(· | tokens[0..t]) for every position of a sequence of n ≤ context_length
  /// tokens (what a perplexity or a parity check needs). last_only: only the last column (V×1).
  Matrix<Scalar> position_log_probs(std::span<const Token> tokens, bool last_only = false) const {
    if (tokens.empty() || tokens.size() > config_.context_length)
      throw InvalidArgument("Llama::position_log_probs: needs between 1 and context_length = " +
                            std::to_string(config_.context_length) + " tokens, got " + std::to_string(tokens.size()));
    for (Token t : tokens) check_token(t);
    Sample s;
    s.tokens.assign(tokens.begin(), tokens.end());
    s.tokens.push_back(0);  // placeholder target: Targets::none reads no target
    auto lease = acquire();
    Workspace& ws = *lease;
    const Sample* one = &s;
    run_chunk(ws, std::span<const Sample* const>(&one, 1), nullptr, Targets::none, nullptr, last_only);
    const auto cols = last_only ? Eigen::Index(1) : static_cast<Eigen::Index>(tokens.size());
    return ws.logits.leftCols(cols);
  }

  // ---- IncrementalLanguageModel ---------------------------------------------------------------------------
  /// A state that has consumed `context` (non-empty, at most context_length tokens kept).
  DecodeState begin_decode(std::span<const Token> context) const {
    if (context.empty()) throw InvalidArgument("Llama::begin_decode: the context is empty; pass at least one token");
    if (context.size() > config_.context_length) context = context.last(config_.context_length);
    for (Token t : context) check_token(t);
    DecodeState st;
    st.keys.resize(config_.num_layers);
    st.values.resize(config_.num_layers);
    for (Token t : context) step_one(st, t);
    return st;
  }

  /// Appends one token (one decoding step). Past context_length the state is rebuilt from the last
  /// context_length tokens (positions restart at 0), which costs a full re-run.
  void advance(DecodeState& st, Token token) const {
    check_token(token);
    if (st.keys.size() != config_.num_layers || st.tokens.empty())
      throw InvalidArgument("Llama::advance: the state was not made by begin_decode() of this model");
    if (st.tokens.size() < config_.context_length) {
      step_one(st, token);
      return;
    }
    std::vector<Token> window(st.tokens.end() - static_cast<std::ptrdiff_t>(config_.context_length) + 1, st.tokens.end());
    window.push_back(token);
    st = begin_decode(window);
  }

  /// out = ln p(· | the tokens the state has consumed).
  void log_probs(const DecodeState& st, std::span<Scalar> out) const {
    check_vocab_out(out.size());
    if (st.log_probs.size() != config_.vocab_size)
      throw InvalidArgument("Llama::log_probs: the state was not made by begin_decode() of this model");
    std::copy(st.log_probs.begin(), st.log_probs.end(), out.begin());
  }

 private:
  enum class Targets { observed, sampled, none };
  using Mat = Matrix<Scalar>;
  using Vec = Vector<Scalar>;
  using RowVec = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
  using ConstMap = Eigen::Map<const Mat>;
  using MutMap = Eigen::Map<Mat>;
  using Index = Eigen::Index;

  // ---- boundary cache ---------------------------------------------------------------------------------
  // The residual stream at the input of block backward_floor() depends only on the input tokens and the
  // frozen weights below it. Those weights are immutable for the lifetime of the frozen store (parameters()
  // exposes only trainable tensors), so an entry keyed by the exact input token sequence never goes stale.
  // The cache lives with the frozen store: copies of a model share it, a model in another precision or with
  // other trainable groups gets its own. Bounded by LlamaExecution::boundary_cache_bytes, oldest out first.
  class BoundaryCache {
   public:
    std::shared_ptr<const Mat> find(const std::string& key) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = map_.find(key);
      if (it == map_.end()) {
        ++misses_;
        return nullptr;
      }
      ++hits_;
      return it->second;
    }
    void insert(std::string key, std::shared_ptr<const Mat> value, std::size_t capacity) {
      const std::size_t bytes = static_cast<std::size_t>(value->size()) * sizeof(Scalar) + key.size();
      std::lock_guard<std::mutex> lock(mutex_);
      if (bytes > capacity || map_.count(key)) return;
      while (bytes_ + bytes > capacity && !order_.empty()) {
        auto it = map_.find(order_.front());
        bytes_ -= static_cast<std::size_t>(it->second->size()) * sizeof(Scalar) + it->first.size();
        map_.erase(it);
        order_.pop_front();
      }
      order_.push_back(key);
      map_.emplace(std::move(key), std::move(value));
      bytes_ += bytes;
    }
    void clear() {
      std::lock_guard<std::mutex> lock(mutex_);
      map_.clear();
      order_.clear();
      bytes_ = 0;
    }
    CacheStatistics statistics() const {
      std::lock_guard<std::mutex> lock(mutex_);
      return {map_.size(), bytes_, hits_, misses_};
    }

   private:
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<const Mat>> map_;
    std::deque<std::string> order_;
    std::size_t bytes_ = 0, hits_ = 0, misses_ = 0;
  };
  struct Frozen {
    std::vector<Scalar> data;
    mutable BoundaryCache cache;
  };

  // ---- workspaces ---------------------------------------------------------------------------------------
  struct LayerCache {  // one column per position of the chunk
    Mat x_in, h1, q, k, v, attn, x_mid, h2, gate, up, act;
    RowVec rstd1, rstd2;
    std::vector<Scalar> probs;  // per sequence, per head: a T×T matrix (column i = query i's attention)
  };
  struct Workspace {
    std::vector<LayerCache> layers;  // blocks backward_floor .. L−1
    LayerCache scratch;              // blocks below the floor (forward only)
    Mat x, x_low, out, logits, dx, dh, dtmp, dq, dk, dv, dattn, dact, dgate, dup, dscores, dprobs;
    RowVec rstd_out;
    std::vector<Index> offset, length, low_offset, low_length;
    std::vector<std::size_t> probs_offset, low_probs_offset;
    std::vector<Token> targets;
    // K-FAC statistics (visit_linear_layers): the visitor, the chunk's first sample, per column whether its
    // position has weight 0, and the sample column offsets.
    LinearLayerVisitor<Scalar>* visitor = nullptr;
    std::size_t first_sample = 0;
    std::vector<char> masked;
    std::vector<Index> sample_columns;
    std::vector<const SoftTarget*> soft;  // per column: the soft target of an observed pass, or nullptr
    ::fisher_unlearn::detail::LayerStatisticsForwarder<Scalar> forward_statistics;
  };
  class WorkspacePool {
   public:
    WorkspacePool() = default;
    WorkspacePool(const WorkspacePool&) noexcept {}
    WorkspacePool& operator=(const WorkspacePool&) noexcept { return *this; }
    std::unique_ptr<Workspace> take() {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_.empty()) return std::make_unique<Workspace>();
      auto w = std::move(free_.back());
      free_.pop_back();
      return w;
    }
    void give(std::unique_ptr<Workspace> w) {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(std::move(w));
    }
    void clear() {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.clear();
    }

   private:
    std::mutex mutex_;
    std::vector<std::unique_ptr<Workspace>> free_;
  };
  class Lease {
   public:
    explicit Lease(WorkspacePool& pool) : pool_(pool), ws_(pool.take()) {}
    ~Lease() { pool_.give(std::move(ws_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Workspace& operator*() const { return *ws_; }

   private:
    WorkspacePool& pool_;
    std::unique_ptr<Workspace> ws_;
  };
  Lease acquire() const { return Lease(pool_); }

  // ---- setup ----------------------------------------------------------------------------------------------
  static LlamaConfig checked(const LlamaConfig& c) {
    c.validate();
    return c;
  }

  static TensorSource random_source(std::uint64_t seed) {
    return [seed](const LlamaTensor& t, std::span<Scalar> out) {
      // One stream per tensor (seeded by its name) so the draw does not depend on the trainable split.
      std::mt19937_64 rng(seed ^ std::hash<std::string>{}(t.name));
      std::normal_distribution<double> normal(0.0, 1.0);
      const bool gain = t.kind == LlamaTensorKind::attn_norm || t.kind == LlamaTensorKind::ffn_norm ||
                        t.kind == LlamaTensorKind::output_norm;
      const double sd = gain ? 0.1 : 1.0 / std::sqrt(static_cast<double>(t.rows));
      for (auto& v : out) v = static_cast<Scalar>((gain ? 1.0 : 0.0) + sd * normal(rng));
    };
  }

  void select_trainable(const std::vector<std::string>& names) {
    for (const std::string& name : names) {
      bool found = false;
      for (auto& t : tensors_) {
        const bool whole_block = t.block >= 0 && name == "blk." + std::to_string(t.block);
        if (name == "all" || name == t.name || whole_block) {
          t.trainable = true;
          found = true;
        }
      }
      if (!found)
        throw InvalidArgument("Llama: unknown trainable group '" + name +
                              "'; use a tensor name (\"blk.3.attn_q\", \"blk.3.ffn_norm\", \"token_embd\", "
                              "\"output_norm\"), a whole block (\"blk.3\", blocks 0.." +
                              std::to_string(config_.num_layers - 1) + ") or \"all\"");
    }
  }

  void finish_setup() {
    groups_.clear();
    trainable_names_.clear();
    index_.clear();
    lowest_trainable_block_ = config_.num_layers;
    bool embedding_trainable = false;
    block_tensor_.assign(config_.num_layers, {});
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const auto& t = tensors_[i];
      index_.emplace(t.name, i);
      if (t.block >= 0) block_tensor_[static_cast<std::size_t>(t.block)][static_cast<std::size_t>(t.kind)] = i;
      else if (t.kind == LlamaTensorKind::token_embd) embed_index_ = i;
      else if (t.kind == LlamaTensorKind::output_norm) out_norm_index_ = i;
      else head_index_ = i;
      if (!t.trainable) continue;
      groups_.push_back({t.name, t.offset, t.size()});
      trainable_names_.push_back(t.name);
      if (t.block >= 0) lowest_trainable_block_ = std::min(lowest_trainable_block_, static_cast<std::size_t>(t.block));
      if (t.kind == LlamaTensorKind::token_embd) embedding_trainable = true;
    }
    if (config_.tied_embeddings) head_index_ = embed_index_;
    layer_of_tensor_.assign(tensors_.size(), kNoLayer);
    std::size_t layer = 0;
    for (std::size_t i = 0; i < tensors_.size(); ++i)
      if (is_linear_layer(tensors_[i])) layer_of_tensor_[i] = layer++;
    if (groups_.empty())
      throw InvalidArgument("Llama: no trainable group was chosen; name at least one (for example the top "
                            "blocks: llama_top_blocks(config, 4))");
    backward_floor_ = embedding_trainable ? 0 : lowest_trainable_block_;
    // RoPE table: angle(pos, i) = pos · base^(−2i/n_rot), computed in double.
    const std::size_t half = config_.rotated_dims() / 2, P = config_.context_length;
    rope_cos_.assign(P * half, Scalar(0));
    rope_sin_.assign(P * half, Scalar(0));
    for (std::size_t p = 0; p < P; ++p)
      for (std::size_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(p) *
                             std::pow(config_.rope_base, -2.0 * static_cast<double>(i) /
                                                             static_cast<double>(config_.rotated_dims()));
        rope_cos_[p * half + i] = static_cast<Scalar>(std::cos(angle));
        rope_sin_[p * half + i] = static_cast<Scalar>(std::sin(angle));
      }
  }

  static constexpr std::size_t kNoLayer = static_cast<std::size_t>(-1);
  static bool is_projection(const LlamaTensor& t) {
    switch (t.kind) {
      case LlamaTensorKind::attn_q: case LlamaTensorKind::attn_k: case LlamaTensorKind::attn_v:
      case LlamaTensorKind::attn_output: case LlamaTensorKind::ffn_gate: case LlamaTensorKind::ffn_up:
      case LlamaTensorKind::ffn_down:
        return t.block >= 0;
      default:
        return false;
    }
  }
  // out = Wᵀ·in (out += Wᵀ·in when Accumulate) for tensor i, from its transposed copy when one is kept.
  template <bool Accumulate, class In, class Out>
  void project(std::size_t i, const In& in, Out&& out) const {
    const LlamaTensor& t = tensors_[i];
    if (frozen_t_ && !(*frozen_t_)[i].empty()) {
      const ConstMap wt((*frozen_t_)[i].data(), static_cast<Index>(t.cols), static_cast<Index>(t.rows));
      if constexpr (Accumulate) out.noalias() += wt * in;
      else out.noalias() = wt * in;
    } else {
      if constexpr (Accumulate) out.noalias() += weight(t).transpose() * in;
      else out.noalias() = weight(t).transpose() * in;
    }
  }
  template <bool Accumulate, class In, class Out>
  void project(std::size_t l, LlamaTensorKind k, const In& in, Out&& out) const {
    project<Accumulate>(block_tensor_[l][static_cast<std::size_t>(k)], in, std::forward<Out>(out));
  }
  static bool is_linear_layer(const LlamaTensor& t) {
    switch (t.kind) {
      case LlamaTensorKind::attn_q: case LlamaTensorKind::attn_k: case LlamaTensorKind::attn_v:
      case LlamaTensorKind::attn_output: case LlamaTensorKind::ffn_gate: case LlamaTensorKind::ffn_up:
      case LlamaTensorKind::ffn_down:
        return t.trainable;
      default:
        return false;
    }
  }
  // Hands the K-FAC visitor (if any) layer (l, kind)'s inputs (in×n) and output gradients (out×n).
  template <class Inputs, class Gradients>
  void visit_layer(Workspace& ws, std::size_t l, LlamaTensorKind kind, const Inputs& a, const Gradients& d) const {
    if (ws.visitor == nullptr) return;
    const std::size_t layer = layer_of_tensor_[block_tensor_[l][static_cast<std::size_t>(kind)]];
    if (layer == kNoLayer) return;
    ws.forward_statistics(*ws.visitor, layer, ws.first_sample, std::span<const Index>(ws.sample_columns),
                          std::span<const char>(ws.masked), a, d);
  }

  const LlamaTensor& find_tensor(std::string_view name) const {
    auto it = index_.find(std::string(name));
    if (it == index_.end())
      throw InvalidArgument("Llama: no tensor named '" + std::string(name) + "' (names look like \"blk.0.attn_q\", "
                            "\"token_embd\", \"output_norm\")");
    return tensors_[it->second];
  }
  const Scalar* data_of(const LlamaTensor& t) const {
    return t.trainable ? theta_.data() + t.offset : frozen_->data.data() + t.offset;
  }
  const LlamaTensor& block_tensor(std::size_t l, LlamaTensorKind k) const {
    return tensors_[block_tensor_[l][static_cast<std::size_t>(k)]];
  }
  ConstMap weight(const LlamaTensor& t) const {
    return ConstMap(data_of(t), static_cast<Index>(t.rows), static_cast<Index>(t.cols));
  }
  ConstMap weight(std::size_t l, LlamaTensorKind k) const { return weight(block_tensor(l, k)); }
  // The gradient slot of a trainable tensor (nullptr when frozen).
  static Scalar* grad_of(Scalar* g, const LlamaTensor& t) { return (g && t.trainable) ? g + t.offset : nullptr; }
  // Whether the weight gradients of the linear layers are computed into g: not for a K-FAC visitor that
  // reads its scores outside them only (wants_linear_layer_scores() false) or reads no scores.
  static bool linear_gradients(const Workspace& ws) {
    return ws.visitor == nullptr || (ws.visitor->wants_sample_gradients() && ws.visitor->wants_linear_layer_scores());
  }
  static MutMap grad_map(Scalar* p, const LlamaTensor& t) {
    return MutMap(p, static_cast<Index>(t.rows), static_cast<Index>(t.cols));
  }

  std::size_t resolved_threads() const {
    return execution_.num_threads == 0 ? std::max<std::size_t>(1, std::thread::hardware_concurrency())
                                       : execution_.num_threads;
  }
  // work(t, threads) for t in [0, threads); callers have already capped threads by the work.
  template <class Work>
  static void run_parallel(std::size_t threads, Work& work) {
    ::fisher_unlearn::detail::run_workers(threads, threads, work);
  }

  void check_token(Token t) const {
    if (t < 0 || static_cast<std::size_t>(t) >= config_.vocab_size)
      throw InvalidArgument("Llama: token " + std::to_string(t) + " is outside the vocabulary [0, " +
                            std::to_string(config_.vocab_size) + ")");
  }
  void check_sample(const Sample& s) const {
    if (s.tokens.size() < 2 || s.tokens.size() > config_.context_length + 1)
      throw InvalidArgument("Llama: a sample has " + std::to_string(s.tokens.size()) +
                            " tokens; it needs between 2 and context_length + 1 = " +
                            std::to_string(config_.context_length + 1) + " (inputs plus the last target)");
    for (Token t : s.tokens) check_token(t);
    if (!s.weights.empty()) {
      if (s.weights.size() != s.tokens.size() - 1)
        throw InvalidArgument("Llama: a sample has " + std::to_string(s.weights.size()) + " weights for " +
                              std::to_string(s.tokens.size() - 1) + " targets; give one weight per target or none");
      for (Scalar w : s.weights)
        if (!std::isfinite(w) || w < Scalar(0))
          throw InvalidArgument("Llama: a sample weight is negative, NaN or Inf; weights must be finite and >= 0");
    }
    ::fisher_unlearn::detail::validate_soft_targets(s.soft_target, s.soft_targets, s.tokens.size() - 1,
                                                    config_.vocab_size, "Llama");
  }
  static double scale_of(const Sample& s) {
    if (s.weights.empty()) return 1.0 / static_cast<double>(s.tokens.size() - 1);
    double sum = 0.0, squares = 0.0;
    for (Scalar w : s.weights) {
      sum += static_cast<double>(w);
      squares += static_cast<double>(w) * static_cast<double>(w);
    }
    return sum > 0.0 && std::isfinite(squares) ? squares / sum : 1.0;
  }
  void check_out(std::size_t n) const {
    if (n != num_parameters())
      throw InvalidArgument("Llama: gradient buffer has size " + std::to_string(n) + " but num_parameters() is " +
                            std::to_string(num_parameters()));
  }
  void check_vocab_out(std::size_t n) const {
    if (n != config_.vocab_size)
      throw InvalidArgument("Llama: log-probability buffer has size " + std::to_string(n) + " but vocab_size() is " +
                            std::to_string(config_.vocab_size));
  }

  static void ensure(Mat& m, Index rows, Index cols) {
    if (m.rows() != rows || m.cols() < cols) m.resize(rows, cols);
  }
  static void ensure(RowVec& m, Index cols) {
    if (m.cols() < cols) m.resize(cols);
  }

  // ---- batches ------------------------------------------------------------------------------------------
  Scalar run_batch(std::span<const Sample> batch, Scalar* g, Targets targets, std::mt19937_64* rng) const {
    const std::size_t d = num_parameters();
    if (g) std::fill(g, g + d, Scalar(0));
    if (batch.empty()) return Scalar(0);
    const std::size_t per = execution_.sequences_per_chunk;
    const std::size_t chunks = (batch.size() + per - 1) / per;
    const std::size_t threads = std::min(resolved_threads(), chunks);
    std::vector<const Sample*> pointers(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) pointers[i] = &batch[i];
    auto chunk_span = [&](std::size_t c) {
      const std::size_t begin = c * per, n = std::min(per, batch.size() - begin);
      return std::span<const Sample* const>(pointers.data() + begin, n);
    };
    std::vector<Scalar> losses(chunks, Scalar(0));
    // Thread t takes chunks [t·chunks/threads, (t+1)·chunks/threads) into its own partial gradient.
    Mat partial(g && threads > 1 ? static_cast<Index>(d) : 0, g && threads > 1 ? static_cast<Index>(threads) : 0);
    if (partial.size() > 0) partial.setZero();
    auto work = [&](std::size_t t, std::size_t stride) {
      auto lease = acquire();
      const std::size_t begin = t * chunks / stride, end = (t + 1) * chunks / stride;
      Scalar* gt = g == nullptr ? nullptr : (stride > 1 ? partial.col(static_cast<Index>(t)).data() : g);
      for (std::size_t c = begin; c < end; ++c) losses[c] = run_chunk(*lease, chunk_span(c), gt, targets, rng);
    };
    run_parallel(threads, work);
    if (g && threads > 1) as_eigen<Scalar>(std::span<Scalar>(g, d)) = partial.rowwise().sum();
    Scalar total = 0;
    for (Scalar l : losses) total += l;
    return total;
  }

  // ---- the forward/backward pass over a chunk -------------------------------------------------------------
  // RMSNorm: out = g ⊙ x · r, r = 1/√(mean(x²) + ε), per column.
  template <class In, class Out>
  void rms_norm(const In& x, const ConstMap& gain, RowVec& rstd, Out&& out) const {
    const Index n = x.cols();
    const Scalar inv_c = Scalar(1) / static_cast<Scalar>(x.rows()), eps = static_cast<Scalar>(config_.rms_epsilon);
    for (Index j = 0; j < n; ++j) {
      const Scalar r = Scalar(1) / std::sqrt(x.col(j).squaredNorm() * inv_c + eps);
      rstd[j] = r;
      out.col(j) = (x.col(j).array() * gain.col(0).array()) * r;
    }
  }
  // Given dy = ∂/∂out: dgain += Σⱼ dyⱼ ⊙ xⱼ rⱼ (when dgain); dx (+)= r·u − x·(r³/C)(x·u), u = g ⊙ dy.
  template <class X, class Dy, class Dx>
  static void rms_norm_backward(const X& x, const RowVec& rstd, const ConstMap& gain, const Dy& dy, Scalar* dgain,
                                Dx&& dx, bool accumulate) {
    const Index n = x.cols(), C = x.rows();
    const Scalar inv_c = Scalar(1) / static_cast<Scalar>(C);
    if (dgain) {
      auto dg = Eigen::Map<Vec>(dgain, C);
      for (Index j = 0; j < n; ++j) dg.array() += dy.col(j).array() * x.col(j).array() * rstd[j];
    }
    for (Index j = 0; j < n; ++j) {
      const Scalar r = rstd[j];
      const Scalar xu = (x.col(j).array() * gain.col(0).array() * dy.col(j).array()).sum();
      const Scalar c = r * r * r * inv_c * xu;
      if (accumulate) dx.col(j).array() += r * gain.col(0).array() * dy.col(j).array() - c * x.col(j).array();
      else dx.col(j).array() = r * gain.col(0).array() * dy.col(j).array() - c * x.col(j).array();
    }
  }

  // Rotates each head's pairs (2i, 2i+1), i < n_rot/2, by ±angle(pos, i) (llama.cpp's "normal" RoPE; the GGUF
  // converter permutes Q/K rows so that this pairing is the model's). sign = −1 applies the inverse (backward).
  template <class M>
  void rope(M&& m, Index col, std::size_t pos, std::size_t heads, Scalar sign) const {
    const std::size_t hd = config_.head_dim(), half = config_.rotated_dims() / 2;
    const Scalar* cs = rope_cos_.data() + pos * half;
    const Scalar* sn = rope_sin_.data() + pos * half;
    for (std::size_t h = 0; h < heads; ++h)
      for (std::size_t i = 0; i < half; ++i) {
        const Index r0 = static_cast<Index>(h * hd + 2 * i);
        const Scalar a = m(r0, col), b = m(r0 + 1, col), c = cs[i], s = sign * sn[i];
        m(r0, col) = a * c - b * s;
        m(r0 + 1, col) = a * s + b * c;
      }
  }

  // Forward of block l over n stacked positions (sequences at off/len); x is updated in place. lc keeps
  // everything the backward needs.
  template <class X>
  void forward_block(std::size_t l, X&& x, const std::vector<Index>& off, const std::vector<Index>& len,
                     std::vector<std::size_t>& probs_off, LayerCache& lc) const {
    const Index n = x.cols();
    const auto C = static_cast<Index>(config_.width), KV = static_cast<Index>(config_.kv_width()),
               F = static_cast<Index>(config_.ffn_width);
    const std::size_t H = config_.num_heads, group = config_.num_heads / config_.num_kv_heads;
    const auto hd = static_cast<Index>(config_.head_dim());
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(hd));
    for (Mat* m : {&lc.x_in, &lc.h1, &lc.attn, &lc.x_mid, &lc.h2, &lc.q}) ensure(*m, C, n);
    for (Mat* m : {&lc.k, &lc.v}) ensure(*m, KV, n);
    for (Mat* m : {&lc.gate, &lc.up, &lc.act}) ensure(*m, F, n);
    ensure(lc.rstd1, n);
    ensure(lc.rstd2, n);
    probs_off.resize(off.size() + 1);
    probs_off[0] = 0;
    for (std::size_t s = 0; s < off.size(); ++s)
      probs_off[s + 1] = probs_off[s] + H * static_cast<std::size_t>(len[s] * len[s]);
    if (lc.probs.size() < probs_off.back()) lc.probs.resize(probs_off.back());

    lc.x_in.leftCols(n) = x;
    rms_norm(x, weight(l, LlamaTensorKind::attn_norm), lc.rstd1, lc.h1.leftCols(n));
    auto q = lc.q.leftCols(n);
    auto k = lc.k.leftCols(n);
    auto v = lc.v.leftCols(n);
    project<false>(l, LlamaTensorKind::attn_q, lc.h1.leftCols(n), q);
    project<false>(l, LlamaTensorKind::attn_k, lc.h1.leftCols(n), k);
    project<false>(l, LlamaTensorKind::attn_v, lc.h1.leftCols(n), v);
    for (std::size_t s = 0; s < off.size(); ++s)
      for (Index t = 0; t < len[s]; ++t) {
        rope(q, off[s] + t, static_cast<std::size_t>(t), H, Scalar(1));
        rope(k, off[s] + t, static_cast<std::size_t>(t), config_.num_kv_heads, Scalar(1));
      }
    for (std::size_t s = 0; s < off.size(); ++s) {
      const Index o = off[s], T = len[s];
      for (std::size_t h = 0; h < H; ++h) {
        const auto hi = static_cast<Index>(h), ki = static_cast<Index>(h / group);
        MutMap p(lc.probs.data() + probs_off[s] + h * static_cast<std::size_t>(T * T), T, T);
        p.noalias() = (k.block(ki * hd, o, hd, T).transpose() * q.block(hi * hd, o, hd, T)) * scale;
        for (Index i = 0; i < T; ++i) {
          auto col = p.col(i).head(i + 1);
          const Scalar m = col.maxCoeff();
          col = (col.array() - m).exp();
          col /= col.sum();
          if (i + 1 < T) p.col(i).tail(T - i - 1).setZero();
        }
        lc.attn.block(hi * hd, o, hd, T).noalias() = v.block(ki * hd, o, hd, T) * p;
      }
    }
    project<true>(l, LlamaTensorKind::attn_output, lc.attn.leftCols(n), x);
    lc.x_mid.leftCols(n) = x;
    rms_norm(x, weight(l, LlamaTensorKind::ffn_norm), lc.rstd2, lc.h2.leftCols(n));
    auto gate = lc.gate.leftCols(n);
    auto up = lc.up.leftCols(n);
    project<false>(l, LlamaTensorKind::ffn_gate, lc.h2.leftCols(n), gate);
    project<false>(l, LlamaTensorKind::ffn_up, lc.h2.leftCols(n), up);
    lc.act.leftCols(n).array() = gate.array() / (Scalar(1) + (-gate.array()).exp()) * up.array();
    project<true>(l, LlamaTensorKind::ffn_down, lc.act.leftCols(n), x);
  }

  // Backward of block l. dx holds ∂/∂(block output) on entry and ∂/∂(block input) on exit (when
  // propagate; otherwise only the block's own gradients are accumulated).
  template <class Dx>
  void backward_block(std::size_t l, Dx&& dx, Workspace& ws, LayerCache& lc, Scalar* g, bool propagate) const {
    const Index n = dx.cols();
    const auto C = static_cast<Index>(config_.width), KV = static_cast<Index>(config_.kv_width()),
               F = static_cast<Index>(config_.ffn_width);
    const std::size_t H = config_.num_heads, group = config_.num_heads / config_.num_kv_heads;
    const auto hd = static_cast<Index>(config_.head_dim());
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(hd));
    const auto& t_norm1 = block_tensor(l, LlamaTensorKind::attn_norm);
    const auto& t_q = block_tensor(l, LlamaTensorKind::attn_q);
    const auto& t_k = block_tensor(l, LlamaTensorKind::attn_k);
    const auto& t_v = block_tensor(l, LlamaTensorKind::attn_v);
    const auto& t_o = block_tensor(l, LlamaTensorKind::attn_output);
    const auto& t_norm2 = block_tensor(l, LlamaTensorKind::ffn_norm);
    const auto& t_gate = block_tensor(l, LlamaTensorKind::ffn_gate);
    const auto& t_up = block_tensor(l, LlamaTensorKind::ffn_up);
    const auto& t_down = block_tensor(l, LlamaTensorKind::ffn_down);
    const bool attn_needed = propagate || t_norm1.trainable || t_q.trainable || t_k.trainable || t_v.trainable ||
                             t_o.trainable;
    for (Mat* m : {&ws.dh, &ws.dtmp, &ws.dq, &ws.dattn}) ensure(*m, C, n);
    for (Mat* m : {&ws.dk, &ws.dv}) ensure(*m, KV, n);
    for (Mat* m : {&ws.dact, &ws.dgate, &ws.dup}) ensure(*m, F, n);

    // ---- feed-forward: x_out = x_mid + W_downᵀ·act, act = silu(gate) ⊙ up ----
    if (Scalar* p = grad_of(g, t_down)) {
      if (linear_gradients(ws)) grad_map(p, t_down).noalias() += lc.act.leftCols(n) * dx.transpose();
      visit_layer(ws, l, LlamaTensorKind::ffn_down, lc.act.leftCols(n), dx);
    }
    auto dact = ws.dact.leftCols(n);
    dact.noalias() = weight(t_down) * dx;
    {
      const auto z = lc.gate.leftCols(n).array();
      const auto sig = Scalar(1) / (Scalar(1) + (-z).exp());
      ws.dup.leftCols(n).array() = dact.array() * z * sig;
      ws.dgate.leftCols(n).array() = dact.array() * lc.up.leftCols(n).array() * sig * (Scalar(1) + z * (Scalar(1) - sig));
    }
    if (Scalar* p = grad_of(g, t_gate)) {
      if (linear_gradients(ws)) grad_map(p, t_gate).noalias() += lc.h2.leftCols(n) * ws.dgate.leftCols(n).transpose();
      visit_layer(ws, l, LlamaTensorKind::ffn_gate, lc.h2.leftCols(n), ws.dgate.leftCols(n));
    }
    if (Scalar* p = grad_of(g, t_up)) {
      if (linear_gradients(ws)) grad_map(p, t_up).noalias() += lc.h2.leftCols(n) * ws.dup.leftCols(n).transpose();
      visit_layer(ws, l, LlamaTensorKind::ffn_up, lc.h2.leftCols(n), ws.dup.leftCols(n));
    }
    auto dh = ws.dh.leftCols(n);
    dh.noalias() = weight(t_gate) * ws.dgate.leftCols(n);
    dh.noalias() += weight(t_up) * ws.dup.leftCols(n);
    rms_norm_backward(lc.x_mid.leftCols(n), lc.rstd2, weight(t_norm2), dh, grad_of(g, t_norm2), dx, true);
    if (!attn_needed) return;

    // ---- attention: x_mid = x_in + W_oᵀ·attn ----
    if (Scalar* p = grad_of(g, t_o)) {
      if (linear_gradients(ws)) grad_map(p, t_o).noalias() += lc.attn.leftCols(n) * dx.transpose();
      visit_layer(ws, l, LlamaTensorKind::attn_output, lc.attn.leftCols(n), dx);
    }
    auto dattn = ws.dattn.leftCols(n);
    dattn.noalias() = weight(t_o) * dx;
    auto dq = ws.dq.leftCols(n);
    auto dk = ws.dk.leftCols(n);
    auto dv = ws.dv.leftCols(n);
    dk.setZero();
    dv.setZero();
    const auto q = lc.q.leftCols(n);
    const auto k = lc.k.leftCols(n);
    const auto v = lc.v.leftCols(n);
    for (std::size_t s = 0; s < ws.offset.size(); ++s) {
      const Index o = ws.offset[s], T = ws.length[s];
      ensure(ws.dscores, T, T);
      for (std::size_t h = 0; h < H; ++h) {
        const auto hi = static_cast<Index>(h), ki = static_cast<Index>(h / group);
        ConstMap p(lc.probs.data() + ws.probs_offset[s] + h * static_cast<std::size_t>(T * T), T, T);
        auto dout = dattn.block(hi * hd, o, hd, T);
        dv.block(ki * hd, o, hd, T).noalias() += dout * p.transpose();
        auto ds = ws.dscores.topLeftCorner(T, T);
        ds.noalias() = v.block(ki * hd, o, hd, T).transpose() * dout;  // dP
        for (Index i = 0; i < T; ++i) {
          const Scalar dot = p.col(i).head(i + 1).dot(ds.col(i).head(i + 1));
          ds.col(i) = (p.col(i).array() * (ds.col(i).array() - dot)) * scale;  // zero where p = 0
        }
        dq.block(hi * hd, o, hd, T).noalias() = k.block(ki * hd, o, hd, T) * ds;
        dk.block(ki * hd, o, hd, T).noalias() += q.block(hi * hd, o, hd, T) * ds.transpose();
      }
    }
    for (std::size_t s = 0; s < ws.offset.size(); ++s)
      for (Index t = 0; t < ws.length[s]; ++t) {
        rope(dq, ws.offset[s] + t, static_cast<std::size_t>(t), H, Scalar(-1));
        rope(dk, ws.offset[s] + t, static_cast<std::size_t>(t), config_.num_kv_heads, Scalar(-1));
      }
    const auto h1 = lc.h1.leftCols(n);
    if (Scalar* p = grad_of(g, t_q)) {
      if (linear_gradients(ws)) grad_map(p, t_q).noalias() += h1 * dq.transpose();
      visit_layer(ws, l, LlamaTensorKind::attn_q, h1, dq);
    }
    if (Scalar* p = grad_of(g, t_k)) {
      if (linear_gradients(ws)) grad_map(p, t_k).noalias() += h1 * dk.transpose();
      visit_layer(ws, l, LlamaTensorKind::attn_k, h1, dk);
    }
    if (Scalar* p = grad_of(g, t_v)) {
      if (linear_gradients(ws)) grad_map(p, t_v).noalias() += h1 * dv.transpose();
      visit_layer(ws, l, LlamaTensorKind::attn_v, h1, dv);
    }
    if (!propagate && !t_norm1.trainable) return;
    dh.noalias() = weight(t_q) * dq;
    dh.noalias() += weight(t_k) * dk;
    dh.noalias() += weight(t_v) * dv;
    if (propagate) {
      rms_norm_backward(lc.x_in.leftCols(n), lc.rstd1, weight(t_norm1), dh, grad_of(g, t_norm1), dx, true);
    } else {
      auto scratch = ws.dtmp.leftCols(n);
      rms_norm_backward(lc.x_in.leftCols(n), lc.rstd1, weight(t_norm1), dh, grad_of(g, t_norm1), scratch, false);
    }
  }

  static std::string cache_key(const Sample& s) {
    std::string key(sizeof(Token) * (s.tokens.size() - 1), '\0');
    std::memcpy(key.data(), s.tokens.data(), key.size());
    return key;
  }

  // Fills ws.x (C×n) with the residual stream at the input of block backward_floor(): from the boundary
  // cache where possible, otherwise by running the frozen blocks below it (and caching the result).
  void boundary_states(Workspace& ws, std::span<const Sample* const> seqs) const {
    const auto C = static_cast<Index>(config_.width);
    const std::size_t floor = backward_floor_;
    const bool use_cache = floor > 0 && execution_.boundary_cache_bytes > 0;
    const ConstMap embd = weight(tensors_[embed_index_]);
    std::vector<std::size_t> missing;
    std::vector<std::string> keys(seqs.size());
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      if (use_cache) {
        keys[s] = cache_key(*seqs[s]);
        if (auto hit = frozen_->cache.find(keys[s])) {
          ws.x.middleCols(ws.offset[s], ws.length[s]) = *hit;
          continue;
        }
      }
      missing.push_back(s);
    }
    if (missing.empty()) return;
    ws.low_offset.clear();
    ws.low_length.clear();
    Index m = 0;
    for (std::size_t s : missing) {
      ws.low_offset.push_back(m);
      ws.low_length.push_back(ws.length[s]);
      m += ws.length[s];
    }
    ensure(ws.x_low, C, m);
    auto xl = ws.x_low.leftCols(m);
    for (std::size_t i = 0; i < missing.size(); ++i)
      for (Index t = 0; t < ws.low_length[i]; ++t)
        xl.col(ws.low_offset[i] + t) = embd.col(seqs[missing[i]]->tokens[static_cast<std::size_t>(t)]);
    for (std::size_t l = 0; l < floor; ++l)
      forward_block(l, xl, ws.low_offset, ws.low_length, ws.low_probs_offset, ws.scratch);
    for (std::size_t i = 0; i < missing.size(); ++i) {
      const std::size_t s = missing[i];
      ws.x.middleCols(ws.offset[s], ws.length[s]) = xl.middleCols(ws.low_offset[i], ws.low_length[i]);
      if (use_cache)
        frozen_->cache.insert(std::move(keys[s]),
                              std::make_shared<const Mat>(xl.middleCols(ws.low_offset[i], ws.low_length[i])),
                              execution_.boundary_cache_bytes);
    }
  }

  // Forward (and backward when g != nullptr, ADDING Σ_s ∇loss(s) into g) over a chunk of sequences.
  // Returns Σ_s loss(s) (0 for Targets::none). Afterwards ws.logits holds log-probabilities (g == nullptr).
  Scalar run_chunk(Workspace& ws, std::span<const Sample* const> seqs, Scalar* g, Targets targets,
                   std::mt19937_64* rng, bool last_only = false) const {
    const auto C = static_cast<Index>(config_.width), V = static_cast<Index>(config_.vocab_size);
    const std::size_t L = config_.num_layers, floor = backward_floor_;
    Index n = 0;
    ws.offset.clear();
    ws.length.clear();
    for (const Sample* s : seqs) {
      ws.offset.push_back(n);
      ws.length.push_back(static_cast<Index>(s->tokens.size()) - 1);
      n += static_cast<Index>(s->tokens.size()) - 1;
    }
    ensure(ws.x, C, n);
    ensure(ws.out, C, n);
    ensure(ws.rstd_out, n);
    if (ws.layers.size() != L - floor) ws.layers.resize(L - floor);

    // ---- forward ----
    boundary_states(ws, seqs);
    auto x = ws.x.leftCols(n);
    for (std::size_t l = floor; l < L; ++l) forward_block(l, x, ws.offset, ws.length, ws.probs_offset, ws.layers[l - floor]);
    rms_norm(x, weight(tensors_[out_norm_index_]), ws.rstd_out, ws.out.leftCols(n));
    const LlamaTensor& head = tensors_[head_index_];
    const ConstMap E = weight(head);
    // Columns whose logits are needed: all, or (position_log_probs with last_only) the last of each sequence.
    Index nl = n;
    if (targets == Targets::none && last_only) {
      nl = static_cast<Index>(seqs.size());
      for (std::size_t s = 0; s < seqs.size(); ++s) ws.out.col(static_cast<Index>(s)) = ws.out.col(ws.offset[s] + ws.length[s] - 1);
    }
    ensure(ws.logits, V, nl);
    auto logits = ws.logits.leftCols(nl);
    project<false>(head_index_, ws.out.leftCols(nl), logits);
    for (Index j = 0; j < nl; ++j) {
      auto col = logits.col(j);
      const Scalar m = col.maxCoeff();
      col.array() -= m;
      col.array() -= std::log(col.array().exp().sum());
    }
    if (targets == Targets::none) return Scalar(0);

    // ---- targets, weights and the loss ----
    ws.targets.resize(static_cast<std::size_t>(n));
    ws.masked.assign(static_cast<std::size_t>(n), 0);
    ws.sample_columns.assign(ws.offset.begin(), ws.offset.end());
    ws.sample_columns.push_back(n);
    std::vector<Scalar> grad_weight(static_cast<std::size_t>(n));
    Scalar total = 0;
    ws.soft.assign(static_cast<std::size_t>(n), nullptr);
    for (std::size_t s = 0; s < seqs.size(); ++s) {
      const Index o = ws.offset[s], T = ws.length[s];
      const Sample& smp = *seqs[s];
      // Seeds: wₜ for ∇loss; √wₜ for K-FAC statistics (the per-token scale); √c·√wₜ for sampled_gradient.
      const Scalar root_scale =
          targets == Targets::sampled && ws.visitor == nullptr ? static_cast<Scalar>(std::sqrt(scale_of(smp))) : Scalar(1);
      for (Index t = 0; t < T; ++t) {
        const auto ti = static_cast<std::size_t>(t), at = static_cast<std::size_t>(o + t);
        const Scalar w = smp.weights.empty() ? Scalar(1) / static_cast<Scalar>(T) : smp.weights[ti];
        const bool per_token_scale = targets == Targets::sampled || ws.visitor != nullptr;
        grad_weight[at] = per_token_scale ? root_scale * std::sqrt(w) : w;
        ws.masked[at] = w == Scalar(0);
        if (targets == Targets::sampled) {
          const Token y = sample_token(logits.col(o + t), *rng);
          ws.targets[at] = y;
          total -= w * logits(y, o + t);
        } else if (!smp.soft_target.empty() && smp.soft_target[ti] >= 0) {
          const SoftTarget& q = smp.soft_targets[static_cast<std::size_t>(smp.soft_target[ti])];
          ws.soft[at] = &q;
          ws.targets[at] = -1;
          Scalar cross_entropy = 0;
          for (std::size_t k = 0; k < q.tokens.size(); ++k)
            cross_entropy -= static_cast<Scalar>(q.probability(k)) * logits(q.tokens[k], o + t);
          total += w * cross_entropy;
        } else {
          const Token y = smp.tokens[ti + 1];
          ws.targets[at] = y;
          total -= w * logits(y, o + t);
        }
      }
    }
    if (g == nullptr) return total;

    // ---- backward: dlogits = seed·(softmax − q), q the one-hot target or the soft target ----
    logits = logits.array().exp().matrix();
    for (Index j = 0; j < n; ++j) {
      const auto at = static_cast<std::size_t>(j);
      if (const SoftTarget* q = ws.soft[at]) {
        for (std::size_t k = 0; k < q->tokens.size(); ++k) logits(q->tokens[k], j) -= static_cast<Scalar>(q->probability(k));
      } else {
        logits(ws.targets[at], j) -= Scalar(1);
      }
      logits.col(j) *= grad_weight[at];
    }
    if (Scalar* p = grad_of(g, head)) grad_map(p, head).noalias() += ws.out.leftCols(n) * logits.transpose();
    ensure(ws.dh, C, n);
    ensure(ws.dx, C, n);
    auto dh = ws.dh.leftCols(n);
    dh.noalias() = E * logits;
    auto dx = ws.dx.leftCols(n);
    const LlamaTensor& out_norm = tensors_[out_norm_index_];
    rms_norm_backward(x, ws.rstd_out, weight(out_norm), dh, grad_of(g, out_norm), dx, false);
    const bool embedding_trainable = tensors_[embed_index_].trainable;
    for (std::size_t l = L; l-- > floor;)
      backward_block(l, dx, ws, ws.layers[l - floor], g, l > floor || embedding_trainable);
    if (embedding_trainable) {
      MutMap dE = grad_map(grad_of(g, tensors_[embed_index_]), tensors_[embed_index_]);
      for (std::size_t s = 0; s < seqs.size(); ++s)
        for (Index t = 0; t < ws.length[s]; ++t) dE.col(seqs[s]->tokens[static_cast<std::size_t>(t)]) += dx.col(ws.offset[s] + t);
    }
    return total;
  }

  // Inverse-CDF draw from exp(log_probs), accumulated in double.
  template <class Col>
  static Token sample_token(const Col& log_probs, std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    double acc = 0.0;
    const Index V = log_probs.size();
    for (Index v = 0; v < V; ++v) {
      acc += std::exp(static_cast<double>(log_probs[v]));
      if (u < acc) return static_cast<Token>(v);
    }
    for (Index v = V; v-- > 0;)
      if (std::exp(static_cast<double>(log_probs[v])) > 0.0) return static_cast<Token>(v);
    return static_cast<Token>(V - 1);
  }

  // One decoding step at position st.tokens.size(): appends the rotated key and the value of every block.
  void step_one(DecodeState& st, Token token) const {
    const auto C = static_cast<Index>(config_.width), KV = static_cast<Index>(config_.kv_width()),
               hd = static_cast<Index>(config_.head_dim());
    const std::size_t H = config_.num_heads, group = config_.num_heads / config_.num_kv_heads, pos = st.tokens.size();
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(hd));
    Mat x = weight(tensors_[embed_index_]).col(token);
    Mat h(C, 1), q(C, 1), kv(KV, 1), attn(C, 1), gate, up;
    RowVec r(1);
    Vec scores;
    const auto npos = static_cast<Index>(pos + 1);
    for (std::size_t l = 0; l < config_.num_layers; ++l) {
      rms_norm(x, weight(l, LlamaTensorKind::attn_norm), r, h);
      q.noalias() = weight(l, LlamaTensorKind::attn_q).transpose() * h;
      rope(q, 0, pos, H, Scalar(1));
      kv.noalias() = weight(l, LlamaTensorKind::attn_k).transpose() * h;
      rope(kv, 0, pos, config_.num_kv_heads, Scalar(1));
      st.keys[l].insert(st.keys[l].end(), kv.data(), kv.data() + KV);
      kv.noalias() = weight(l, LlamaTensorKind::attn_v).transpose() * h;
      st.values[l].insert(st.values[l].end(), kv.data(), kv.data() + KV);
      const ConstMap K(st.keys[l].data(), KV, npos), Vv(st.values[l].data(), KV, npos);
      for (std::size_t hh = 0; hh < H; ++hh) {
        const auto hi = static_cast<Index>(hh), ki = static_cast<Index>(hh / group);
        scores.noalias() = (K.middleRows(ki * hd, hd).transpose() * q.col(0).segment(hi * hd, hd)) * scale;
        const Scalar m = scores.maxCoeff();
        scores = (scores.array() - m).exp();
        scores /= scores.sum();
        attn.col(0).segment(hi * hd, hd).noalias() = Vv.middleRows(ki * hd, hd) * scores;
      }
      x.noalias() += weight(l, LlamaTensorKind::attn_output).transpose() * attn;
      rms_norm(x, weight(l, LlamaTensorKind::ffn_norm), r, h);
      gate.noalias() = weight(l, LlamaTensorKind::ffn_gate).transpose() * h;
      up.noalias() = weight(l, LlamaTensorKind::ffn_up).transpose() * h;
      up.array() *= gate.array() / (Scalar(1) + (-gate.array()).exp());
      x.noalias() += weight(l, LlamaTensorKind::ffn_down).transpose() * up;
    }
    rms_norm(x, weight(tensors_[out_norm_index_]), r, h);
    Vec logits = weight(tensors_[head_index_]).transpose() * h.col(0);
    const Scalar m = logits.maxCoeff();
    logits.array() -= m;
    logits.array() -= std::log(logits.array().exp().sum());
    st.log_probs.assign(logits.data(), logits.data() + logits.size());
    st.tokens.push_back(token);
  }

  LlamaConfig config_;
  std::vector<LlamaTensor> tensors_;
  Vec theta_;
  std::shared_ptr<const Frozen> frozen_;
  std::shared_ptr<const std::vector<std::vector<Scalar>>> frozen_t_;  // set_transposed_frozen_weights
  LlamaExecution execution_;
  std::vector<ParameterGroup> groups_;
  std::vector<std::string> trainable_names_;
  std::size_t lowest_trainable_block_ = 0, backward_floor_ = 0;
  std::vector<Scalar> rope_cos_, rope_sin_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::array<std::size_t, 12>> block_tensor_;
  std::vector<std::size_t> layer_of_tensor_;
  std::size_t embed_index_ = 0, out_norm_index_ = 0, head_index_ = 0;
  mutable WorkspacePool pool_;
};

}  // namespace fisher_unlearn::models
