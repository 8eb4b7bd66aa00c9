// A GPT-style causal language model with exact, hand-written backward passes (Eigen GEMMs):
//   x⁰ = E[tok] + P[pos];  xˡ⁺¹ = x' + W₂·gelu(W₁·LN₂(x') + b₁) + b₂,  x' = xˡ + Attn(LN₁(xˡ));
//   logits = Eᵀ·LN_f(xᴸ) (tied head);  loss(sequence) = mean_t −ln p(tokₜ₊₁ | tok≤ₜ), or with target weights
//   and soft targets (sequence_sample.hpp) Σₜ wₜ·(−Σ_v qₜ(v) ln p(v | tok≤ₜ)) / Σₜ wₜ.
// Cost per sequence of T positions: about 6·T·(12·L·C² + V·C) + 6·L·T²·C flops for loss+gradient
// (d ≈ 12·L·C² + (V + T_max)·C parameters); memory O(L·T·(C + F) + L·H·T²) per workspace.
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
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fisher_unlearn::models {

/// The architecture of a Transformer. Only the first six fields define the parameter layout; `seed`
/// only chooses the initial parameters.
struct TransformerConfig {
  std::size_t vocab_size = ByteTokenizer::kVocabSize;  ///< V: tokens (256 for the byte tokenizer)
  std::size_t context_length = 64;  ///< T_max: positions the model attends over (input tokens)
  std::size_t num_layers = 2;       ///< L: transformer blocks
  std::size_t width = 64;           ///< C: residual stream width (d_model)
  std::size_t num_heads = 4;        ///< H: attention heads; must divide width
  std::size_t mlp_ratio = 4;        ///< F = mlp_ratio·C hidden units in each MLP
  std::uint64_t seed = 0;           ///< initial parameters: N(0, 0.02²), residual projections / √(2L)

  /// Throws InvalidArgument naming the field that is out of range.
  void validate() const {
    auto require = [](bool ok, const std::string& what) {
      if (!ok) throw InvalidArgument("TransformerConfig: " + what);
    };
    require(vocab_size >= 2, "vocab_size must be at least 2 (256 for the byte tokenizer)");
    require(context_length >= 1, "context_length must be at least 1");
    require(num_layers >= 1, "num_layers must be at least 1");
    require(width >= 1, "width must be at least 1");
    require(num_heads >= 1 && width % num_heads == 0,
            "num_heads (" + std::to_string(num_heads) + ") must be positive and divide width (" +
                std::to_string(width) + ")");
    require(mlp_ratio >= 1, "mlp_ratio must be at least 1");
    // Guard against sizes whose parameter count overflows or that cannot be allocated anyway.
    require(vocab_size <= (1u << 24) && context_length <= (1u << 20) && width <= (1u << 16) &&
                num_layers <= 4096 && mlp_ratio <= 64,
            "a size is implausibly large (vocab <= 2^24, context <= 2^20, width <= 2^16, layers <= 4096, "
            "mlp_ratio <= 64)");
  }

  /// Same parameter layout (every field but the seed).
  bool same_architecture(const TransformerConfig& o) const {
    return vocab_size == o.vocab_size && context_length == o.context_length && num_layers == o.num_layers &&
           width == o.width && num_heads == o.num_heads && mlp_ratio == o.mlp_ratio;
  }

  /// "key=value" lines, one per field, in declaration order (stored verbatim in checkpoints).
  std::string to_string() const {
    std::ostringstream os;
    os << "vocab_size=" << vocab_size << "\ncontext_length=" << context_length << "\nnum_layers=" << num_layers
       << "\nwidth=" << width << "\nnum_heads=" << num_heads << "\nmlp_ratio=" << mlp_ratio << "\nseed=" << seed
       << "\n";
    return os.str();
  }

  /// Inverse of to_string(); throws FileFormatError on an unknown key, a missing key or a bad number.
  static TransformerConfig parse(const std::string& text) {
    TransformerConfig c;
    std::istringstream is(text);
    std::string line;
    unsigned seen = 0;
    while (std::getline(is, line)) {
      if (line.empty()) continue;
      const auto eq = line.find('=');
      if (eq == std::string::npos) throw FileFormatError("TransformerConfig: line '" + line + "' is not key=value");
      const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
      std::uint64_t v = 0;
      try {
        std::size_t used = 0;
        v = std::stoull(value, &used);
        if (used != value.size() || value.empty() || value[0] == '-') throw std::invalid_argument(value);
      } catch (const std::exception&) {
        throw FileFormatError("TransformerConfig: value of '" + key + "' is not a non-negative integer: '" + value +
                              "'");
      }
      const char* names[] = {"vocab_size", "context_length", "num_layers", "width", "num_heads", "mlp_ratio", "seed"};
      std::uint64_t* fields[] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &c.seed};
      std::size_t* sizes[] = {&c.vocab_size, &c.context_length, &c.num_layers, &c.width,
                              &c.num_heads,  &c.mlp_ratio,      nullptr};
      bool known = false;
      for (unsigned i = 0; i < 7; ++i) {
        if (key != names[i]) continue;
        known = true;
        if (fields[i]) *fields[i] = v;
        else *sizes[i] = static_cast<std::size_t>(v);
        seen |= 1u << i;
      }
      if (!known) throw FileFormatError("TransformerConfig: unknown key '" + key + "'");
    }
    if (seen != 0x7fu) throw FileFormatError("TransformerConfig: a field is missing (need all 7 keys)");
    return c;
  }
};

/// How sum_loss_and_gradient spreads a batch over threads. Not part of the model's identity.
/// Determinism: the batch is cut into chunks of `sequences_per_chunk` consecutive sequences; each
/// chunk's gradient is computed by one thread and the chunk gradients are added in chunk order, so the
/// result is bitwise independent of num_threads (it does depend on sequences_per_chunk).
struct TransformerExecution {
  std::size_t num_threads = 1;          ///< 0 means std::thread::hardware_concurrency()
  std::size_t sequences_per_chunk = 8;  ///< sequences whose activations are stacked into one GEMM
};

/// Parameter layout: offsets into the flat parameter vector. Matrices are column-major, W is out×in.
struct TransformerLayout {
  struct Block {
    std::size_t begin = 0, end = 0;
    std::size_t ln1_gain = 0, ln1_bias = 0, qkv_weight = 0, qkv_bias = 0, out_weight = 0, out_bias = 0;
    std::size_t ln2_gain = 0, ln2_bias = 0, fc_weight = 0, fc_bias = 0, proj_weight = 0, proj_bias = 0;
  };
  std::size_t token_embedding = 0;     ///< C×V: column v is token v's embedding (and output row v)
  std::size_t position_embedding = 0;  ///< C×T_max
  std::vector<Block> blocks;
  std::size_t final_gain = 0, final_bias = 0;
  std::size_t total = 0;

  explicit TransformerLayout(const TransformerConfig& c) {
    const std::size_t C = c.width, F = c.mlp_ratio * c.width;
    std::size_t at = 0;
    auto take = [&at](std::size_t n) {
      const std::size_t o = at;
      at += n;
      return o;
    };
    token_embedding = take(C * c.vocab_size);
    position_embedding = take(C * c.context_length);
    for (std::size_t l = 0; l < c.num_layers; ++l) {
      Block b;
      b.begin = at;
      b.ln1_gain = take(C);
      b.ln1_bias = take(C);
      b.qkv_weight = take(3 * C * C);
      b.qkv_bias = take(3 * C);
      b.out_weight = take(C * C);
      b.out_bias = take(C);
      b.ln2_gain = take(C);
      b.ln2_bias = take(C);
      b.fc_weight = take(F * C);
      b.fc_bias = take(F);
      b.proj_weight = take(C * F);
      b.proj_bias = take(C);
      b.end = at;
      blocks.push_back(b);
    }
    final_gain = take(C);
    final_bias = take(C);
    total = at;
  }
};

template <SupportedScalar ScalarType>
class Transformer {
 public:
  using Scalar = ScalarType;

  /// One training sequence: tokens[0..n-2] are the inputs, tokens[1..n-1] the targets (2 <= n <= T_max+1),
  /// with optional per-target weights and soft targets (SequenceSample; Sample{tokens} is the plain
  /// next-token sample). The same type for every Scalar.
  using Sample = SequenceSample;

  /// Incremental decoding state: the tokens consumed, every layer's keys and values, and
  /// log p(· | consumed). Copying it copies only the positions consumed so far.
  struct DecodeState {
    std::vector<Token> tokens;
    std::vector<std::vector<Scalar>> keys, values;  ///< per layer: C values per consumed position
    std::vector<Scalar> log_probs;                   ///< V entries
  };

  explicit Transformer(const TransformerConfig& config) : config_(checked(config)), layout_(config_) {
    theta_.resize(static_cast<Eigen::Index>(layout_.total));
    initialize(config_.seed);
  }

  /// The same model in another precision (parameters rounded); the workspaces are not shared.
  template <SupportedScalar Other>
  explicit Transformer(const Transformer<Other>& other) : config_(other.config()), layout_(config_) {
    const auto p = other.parameters();
    theta_ = Eigen::Map<const Vector<Other>>(p.data(), static_cast<Eigen::Index>(p.size())).template cast<Scalar>();
    execution_ = other.execution();
  }

  Transformer(const Transformer& o) : config_(o.config_), layout_(o.layout_), theta_(o.theta_), execution_(o.execution_) {}
  Transformer& operator=(const Transformer& o) {
    if (this != &o) {
      config_ = o.config_;
      layout_ = o.layout_;
      theta_ = o.theta_;
      execution_ = o.execution_;
      pool_.clear();
    }
    return *this;
  }
  Transformer(Transformer&& o) noexcept
      : config_(o.config_), layout_(std::move(o.layout_)), theta_(std::move(o.theta_)), execution_(o.execution_) {}
  Transformer& operator=(Transformer&& o) noexcept {
    config_ = o.config_;
    layout_ = std::move(o.layout_);
    theta_ = std::move(o.theta_);
    execution_ = o.execution_;
    pool_.clear();
    return *this;
  }

  /// Redraws the parameters: weights N(0, 0.02²) (residual output projections N(0, (0.02/√(2L))²)),
  /// biases 0, LayerNorm gains 1. Deterministic for a seed and identical (up to rounding) in float
  /// and double.
  void initialize(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    const double std_dev = 0.02, proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config_.num_layers));
    const std::size_t C = config_.width, F = config_.mlp_ratio * C;
    auto fill = [&](std::size_t offset, std::size_t n, double s) {
      for (std::size_t i = 0; i < n; ++i) theta_[static_cast<Eigen::Index>(offset + i)] = static_cast<Scalar>(s * normal(rng));
    };
    auto constant = [&](std::size_t offset, std::size_t n, double v) {
      theta_.segment(static_cast<Eigen::Index>(offset), static_cast<Eigen::Index>(n)).setConstant(static_cast<Scalar>(v));
    };
    fill(layout_.token_embedding, C * config_.vocab_size, std_dev);
    fill(layout_.position_embedding, C * config_.context_length, std_dev);
    for (const auto& b : layout_.blocks) {
      constant(b.ln1_gain, C, 1.0);
      constant(b.ln1_bias, C, 0.0);
      fill(b.qkv_weight, 3 * C * C, std_dev);
      constant(b.qkv_bias, 3 * C, 0.0);
      fill(b.out_weight, C * C, proj_std);
      constant(b.out_bias, C, 0.0);
      constant(b.ln2_gain, C, 1.0);
      constant(b.ln2_bias, C, 0.0);
      fill(b.fc_weight, F * C, std_dev);
      constant(b.fc_bias, F, 0.0);
      fill(b.proj_weight, C * F, proj_std);
      constant(b.proj_bias, C, 0.0);
    }
    constant(layout_.final_gain, C, 1.0);
    constant(layout_.final_bias, C, 0.0);
  }

  // ---- Model ----------------------------------------------------------------------------------
  const TransformerConfig& config() const { return config_; }
  const TransformerLayout& layout() const { return layout_; }
  std::size_t num_parameters() const { return layout_.total; }
  std::span<Scalar> parameters() { return {theta_.data(), layout_.total}; }
  std::span<const Scalar> parameters() const { return {theta_.data(), layout_.total}; }
  std::size_t vocab_size() const { return config_.vocab_size; }
  std::size_t context_length() const { return config_.context_length; }

  const TransformerExecution& execution() const { return execution_; }
  void set_execution(const TransformerExecution& e) {
    if (e.sequences_per_chunk == 0) throw InvalidArgument("TransformerExecution: sequences_per_chunk must be >= 1");
    execution_ = e;
  }

  /// "embedding" (token and position tables; the tied output head), "block0" … "block{L−1}",
  /// "final_norm" (the last LayerNorm). They partition the parameter vector in order.
  std::vector<ParameterGroup> parameter_groups() const {
    std::vector<ParameterGroup> groups;
    groups.push_back({"embedding", 0, layout_.blocks.front().begin});
    for (std::size_t l = 0; l < layout_.blocks.size(); ++l)
      groups.push_back({"block" + std::to_string(l), layout_.blocks[l].begin, layout_.blocks[l].end - layout_.blocks[l].begin});
    groups.push_back({"final_norm", layout_.final_gain, layout_.total - layout_.final_gain});
    return groups;
  }

  /// The weight matrices (embeddings, attention and MLP weights): what AdamW decays. Biases and
  /// LayerNorm parameters are left out, as in GPT-2 practice.
  std::vector<ParameterGroup> weight_decay_groups() const {
    const std::size_t C = config_.width, F = config_.mlp_ratio * C;
    std::vector<ParameterGroup> g;
    g.push_back({"embedding", 0, layout_.blocks.front().begin});
    for (std::size_t l = 0; l < layout_.blocks.size(); ++l) {
      const auto& b = layout_.blocks[l];
      const std::string p = "block" + std::to_string(l);
      g.push_back({p + ".qkv_weight", b.qkv_weight, 3 * C * C});
      g.push_back({p + ".out_weight", b.out_weight, C * C});
      g.push_back({p + ".fc_weight", b.fc_weight, F * C});
      g.push_back({p + ".proj_weight", b.proj_weight, C * F});
    }
    return g;
  }

  /// Mean next-token cross-entropy (natural log) over the sequence's n−1 positions; with s.targets,
  /// Σₜ wₜℓₜ / Σₜ wₜ where ℓₜ is the cross-entropy towards position t's soft target or observed token.
  Scalar loss(const Sample& s) const {
    check_sample(s);
    auto lease = acquire();
    const Sample* one = &s;
    return run_chunk(*lease, std::span<const Sample* const>(&one, 1), nullptr, Targets::observed, nullptr);
  }

  /// g = ∇loss(s) (overwritten); returns loss(s). Allocation-free once this thread's workspace is warm.
  Scalar gradient(const Sample& s, std::span<Scalar> g) const {
    check_sample(s);
    check_out(g.size());
    auto lease = acquire();
    const Sample* one = &s;
    return run_chunk(*lease, std::span<const Sample* const>(&one, 1), g.data(), Targets::observed, nullptr);
  }

  /// g = Σ_s ∇loss(s) (overwritten); returns Σ_s loss(s). Parallel over chunks (see TransformerExecution).
  Scalar sum_loss_and_gradient(std::span<const Sample> batch, std::span<Scalar> g) const {
    check_out(g.size());
    for (const Sample& s : batch) check_sample(s);
    auto out = as_eigen<Scalar>(g);
    out.setZero();
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
    if (chunks == 1) {
      auto lease = acquire();
      return run_chunk(*lease, chunk_span(0), g.data(), Targets::observed, nullptr);
    }
    // One gradient buffer per chunk, added in chunk order: the sum does not depend on the thread count.
    Matrix<Scalar> partial(static_cast<Eigen::Index>(layout_.total), static_cast<Eigen::Index>(chunks));
    std::vector<Scalar> losses(chunks, Scalar(0));
    auto work = [&](std::size_t first, std::size_t stride) {
      auto lease = acquire();
      for (std::size_t c = first; c < chunks; c += stride)
        losses[c] = run_chunk(*lease, chunk_span(c), partial.col(static_cast<Eigen::Index>(c)).data(), Targets::observed,
                              nullptr);
    };
    run_parallel(threads, work);
    Scalar total = 0;
    for (std::size_t c = 0; c < chunks; ++c) {
      out += partial.col(static_cast<Eigen::Index>(c));
      total += losses[c];
    }
    return total;
  }

  /// Σ_s loss(s) without gradients, chunked and threaded like sum_loss_and_gradient (evaluation).
  Scalar sum_loss(std::span<const Sample> batch) const {
    for (const Sample& s : batch) check_sample(s);
    if (batch.empty()) return Scalar(0);
    const std::size_t per = execution_.sequences_per_chunk;
    const std::size_t chunks = (batch.size() + per - 1) / per;
    std::vector<const Sample*> pointers(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) pointers[i] = &batch[i];
    std::vector<Scalar> losses(chunks, Scalar(0));
    auto work = [&](std::size_t first, std::size_t stride) {
      auto lease = acquire();
      for (std::size_t c = first; c < chunks; c += stride) {
        const std::size_t begin = c * per, n = std::min(per, batch.size() - begin);
        losses[c] = run_chunk(*lease, std::span<const Sample* const>(pointers.data() + begin, n), nullptr,
                              Targets::observed, nullptr);
      }
    };
    run_parallel(std::min(resolved_threads(), chunks), work);
    Scalar total = 0;
    for (Scalar l : losses) total += l;
    return total;
  }

  /// g = ∇ c·Σₜ √wₜ·(−ln p(ŷₜ | tok≤ₜ)) with ŷₜ ~ p(· | tok≤ₜ; θ) drawn in order at every position of
  /// positive weight (one uniform from rng each), c = loss_scale(s) = 1/Σₜwₜ (1/(n−1) unweighted). The
  /// observed and soft targets are ignored (the Gauss–Newton matrix does not depend on them); the last
  /// token is never an input. E[g gᵀ] = c·G(s), G(s) = c Σₜ wₜ Fₜ the Gauss–Newton matrix of loss(s):
  /// NOT the Fisher of loss(s) itself, which is c⁻¹ times larger — collect_gradients divides by √c.
  /// For a 0/1 mask, g is exactly ∇loss at the drawn targets.
  void sampled_gradient(const Sample& s, std::mt19937_64& rng, std::span<Scalar> g) const {
    check_sample(s);
    check_out(g.size());
    auto lease = acquire();
    const Sample* one = &s;
    run_chunk(*lease, std::span<const Sample* const>(&one, 1), g.data(), Targets::sampled, &rng);
  }

  /// c in loss(s) = c·Σₜ wₜ ℓₜ: 1/Σₜ wₜ, i.e. 1/(n−1) for a plain sample (HasLossScale). The outer
  /// product of a per-sequence gradient is c times the curvature of loss(s); see sampled_gradient.
  Scalar loss_scale(const Sample& s) const {
    check_sample(s);
    if (s.targets.weights.empty()) return Scalar(1) / static_cast<Scalar>(s.tokens.size() - 1);
    double total = 0.0;
    for (double w : s.targets.weights) total += w;
    return static_cast<Scalar>(1.0 / total);
  }

  // ---- LinearLayerModel (K-FAC / EK-FAC) ------------------------------------------------------
  /// The 4·L linear layers, block by block: "block<l>.qkv" (C→3C), "block<l>.attn_out" (C→C),
  /// "block<l>.fc" (C→F), "block<l>.proj" (F→C); column-major weights, each with its bias. The
  /// embeddings (token table = tied output head, positions) and the LayerNorm gains/biases are not
  /// linear layers here: a Kronecker estimator treats them as its diagonal block.
  std::vector<LinearLayer> linear_layers() const {
    const std::size_t C = config_.width, F = config_.mlp_ratio * C;
    std::vector<LinearLayer> layers;
    for (std::size_t l = 0; l < layout_.blocks.size(); ++l) {
      const auto& b = layout_.blocks[l];
      const std::string p = "block" + std::to_string(l);
      layers.push_back({p + ".qkv", C, 3 * C, b.qkv_weight, WeightOrder::column_major, true, b.qkv_bias});
      layers.push_back({p + ".attn_out", C, C, b.out_weight, WeightOrder::column_major, true, b.out_bias});
      layers.push_back({p + ".fc", C, F, b.fc_weight, WeightOrder::column_major, true, b.fc_bias});
      layers.push_back({p + ".proj", F, C, b.proj_weight, WeightOrder::column_major, true, b.proj_bias});
    }
    return layers;
  }

  /// Forward + backward over `samples` (observed targets, or targets drawn with rng as sampled_gradient
  /// draws them), handing `visitor` every linear layer's inputs and output gradients (concepts.hpp,
  /// LinearLayerModel). The backward pass is seeded with √cₜ = 1/√(n−1) per position instead of the
  /// loss's 1/(n−1), so the implied per-sequence score g̃ = √(n−1)·∇ satisfies E[g̃g̃ᵀ] = the Gauss–Newton
  /// matrix of loss(s); for a weighted sample every seed is likewise divided by √loss_scale(s), i.e.
  /// g̃ = ∇/√c exactly as collect_gradients scales it. Sequences are batched sequences_per_chunk at a time,
  /// also when the visitor wants each sample's score vector but reads it outside the linear layers only
  /// (wants_linear_layer_scores() false, as K-FAC's diagonal block: the linear-layer entries are left 0 and
  /// their GEMMs skipped; the others are computed per sequence of the chunk), one at a time when it wants
  /// whole scores. Single-threaded; the visitor is called in sample order (a chunk's layers, then its
  /// samples' scores).
  void visit_linear_layers(std::span<const Sample> samples, CurvatureTargets targets, std::mt19937_64& rng,
                           LinearLayerVisitor<Scalar>& visitor) const {
    for (const Sample& s : samples) check_sample(s);
    if (samples.empty()) return;
    const bool per_sample = visitor.wants_sample_gradients();
    // Scores outside the linear layers only: the chunk is batched and each sequence's entries (embeddings,
    // LayerNorms) go to its own vector; whole scores need one sequence at a time.
    const bool split_scores = per_sample && !visitor.wants_linear_layer_scores();
    const std::size_t total = layout_.total;
    std::size_t per = per_sample && !split_scores ? 1 : execution_.sequences_per_chunk;
    // split scores hold a whole parameter vector per sequence: at most kSplitScoreBytes of them
    if (split_scores) per = std::clamp<std::size_t>(kSplitScoreBytes / (total * sizeof(Scalar)), 1, per);
    std::vector<const Sample*> pointers(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) pointers[i] = &samples[i];
    auto lease = acquire();
    Vec whole;
    Scalar* scores = nullptr;
    if (split_scores) {
      // one score per sequence of a chunk, kept with the workspace (a block of the K-FAC pass visits 32
      // samples; fresh scores for every visit were page faults); their linear-layer entries are never
      // written, so they stay the 0 they are allocated with
      const auto need = static_cast<Eigen::Index>(total * std::min(per, samples.size()));
      if ((*lease).split_scores.size() < need) (*lease).split_scores = Vec::Zero(need);
      scores = (*lease).split_scores.data();
    } else {
      whole.resize(static_cast<Eigen::Index>(total));
      scores = whole.data();
    }
    for (std::size_t begin = 0; begin < samples.size(); begin += per) {
      const std::size_t n = std::min(per, samples.size() - begin);
      run_chunk(*lease, std::span<const Sample* const>(pointers.data() + begin, n), scores,
                targets == CurvatureTargets::sampled ? Targets::sampled : Targets::observed, &rng, &visitor, begin,
                split_scores);
      if (!per_sample) continue;
      for (std::size_t s = 0; s < (split_scores ? n : 1); ++s)
        visitor.on_sample_gradient(begin + s, std::span<const Scalar>(scores + s * total, total));
    }
  }

  // ---- LanguageModel --------------------------------------------------------------------------
  /// out[v] = ln p(v | context). context must be non-empty (there is no beginning-of-text token);
  /// only its last context_length tokens are used.
  void next_token_log_probs(std::span<const Token> context, std::span<Scalar> out) const {
    if (context.empty())
      throw InvalidArgument("Transformer::next_token_log_probs: the context is empty; this model has no "
                            "beginning-of-text token, so pass at least one token");
    check_vocab_out(out.size());
    if (context.size() > config_.context_length) context = context.last(config_.context_length);
    for (Token t : context) check_token(t);
    Sample s;
    s.tokens.assign(context.begin(), context.end());
    s.tokens.push_back(0);  // a placeholder target: only the last position's distribution is read
    auto lease = acquire();
    const Sample* one = &s;
    run_chunk(*lease, std::span<const Sample* const>(&one, 1), nullptr, Targets::none, nullptr);
    const auto& ws = *lease;
    const Eigen::Index last = static_cast<Eigen::Index>(context.size()) - 1;
    as_eigen<Scalar>(out) = ws.logits.col(last);
  }

  // ---- IncrementalLanguageModel ---------------------------------------------------------------
  /// A state that has consumed `context` (non-empty). Cost: |context| single-position steps.
  DecodeState begin_decode(std::span<const Token> context) const {
    if (context.empty())
      throw InvalidArgument("Transformer::begin_decode: the context is empty; pass at least one token");
    DecodeState st;
    st.keys.resize(config_.num_layers);
    st.values.resize(config_.num_layers);
    if (context.size() > config_.context_length) context = context.last(config_.context_length);
    for (Token t : context) check_token(t);
    for (Token t : context) step_one(st, t);
    return st;
  }

  /// Appends one token. When the context window is full the state is rebuilt from the last
  /// context_length tokens (positions shift), which costs a full re-run; below that it costs one step.
  void advance(DecodeState& st, Token token) const {
    check_token(token);
    if (st.keys.size() != config_.num_layers || st.tokens.empty())
      throw InvalidArgument("Transformer::advance: the state was not made by begin_decode() of this model");
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
      throw InvalidArgument("Transformer::log_probs: the state was not made by begin_decode() of this model");
    std::copy(st.log_probs.begin(), st.log_probs.end(), out.begin());
  }

 private:
  enum class Targets { observed, sampled, none };
  using Mat = Matrix<Scalar>;
  using Vec = Vector<Scalar>;
  using RowVec = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
  using ConstMap = Eigen::Map<const Mat>;
  using MutMap = Eigen::Map<Mat>;
  static constexpr Scalar kLayerNormEpsilon = Scalar(1e-5);
  static constexpr std::size_t kSplitScoreBytes = std::size_t(32) << 20;  // visit_linear_layers' chunk scores
  static constexpr Token kSkipped = -1;  // a position of weight 0
  static constexpr Token soft_code(std::int32_t k) { return -2 - k; }
  static constexpr std::int32_t soft_index(Token code) { return -2 - code; }

  // Activations of one chunk, one column per position (all sequences of the chunk side by side).
  struct LayerCache {
    Mat ln1_xhat, ln1_out, qkv, probs, attn, ln2_xhat, ln2_out, fc_pre, fc_tanh, fc_act;
    RowVec ln1_rstd, ln2_rstd;
  };
  struct Workspace {
    std::size_t capacity = 0;  // columns
    std::vector<LayerCache> layers;
    Mat x, lnf_xhat, lnf_out, logits, dx, dtmp, dln, dqkv, dfc, dscores;
    RowVec lnf_rstd;
    std::vector<Token> targets;  // per position: a token, kSkipped, or soft_code(k) (weighted samples only)
    std::vector<Scalar> factor;  // per position of a weighted sample: ∂loss/∂ℓₜ (c·wₜ; c·√wₜ when sampled)
    std::vector<Eigen::Index> seq_offset, seq_length, seq_columns;
    Vec split_scores;  // visit_linear_layers: a chunk's scores outside the linear layers (0 inside them)
  };

  // Workspaces are checked out per call, so const methods may run concurrently on one model (each
  // concurrent caller gets its own workspace); a copy of the model starts with an empty pool.
  class WorkspacePool {
   public:
    WorkspacePool() = default;
    WorkspacePool(const WorkspacePool&) {}
    WorkspacePool& operator=(const WorkspacePool&) { return *this; }
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
    Lease(WorkspacePool& pool) : pool_(pool), ws_(pool.take()) {}
    ~Lease() { pool_.give(std::move(ws_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Workspace& operator*() const { return *ws_; }

   private:
    WorkspacePool& pool_;
    std::unique_ptr<Workspace> ws_;
  };
  Lease acquire() const { return Lease(pool_); }

  // work(t, threads) for t in [0, threads); callers have already capped threads by the work.
  template <class Work>
  static void run_parallel(std::size_t threads, Work& work) {
    ::fisher_unlearn::detail::run_workers(threads, threads, work);
  }

  std::size_t resolved_threads() const {
    return execution_.num_threads == 0 ? std::max<std::size_t>(1, std::thread::hardware_concurrency())
                                       : execution_.num_threads;
  }
  static TransformerConfig checked(const TransformerConfig& c) {
    c.validate();
    return c;
  }
  void check_token(Token t) const {
    if (t < 0 || static_cast<std::size_t>(t) >= config_.vocab_size)
      throw InvalidArgument("Transformer: token " + std::to_string(t) + " is outside the vocabulary [0, " +
                            std::to_string(config_.vocab_size) + ")");
  }
  void check_sample(const Sample& s) const {
    if (s.tokens.size() < 2 || s.tokens.size() > config_.context_length + 1)
      throw InvalidArgument("Transformer: a sample has " + std::to_string(s.tokens.size()) +
                            " tokens; it needs between 2 and context_length + 1 = " +
                            std::to_string(config_.context_length + 1) + " (inputs plus the last target)");
    for (Token t : s.tokens) check_token(t);
    if (!s.targets.plain() || !s.targets.soft_targets.empty())
      ::fisher_unlearn::detail::validate_sequence_targets(s.targets, s.tokens.size(), config_.vocab_size, "Transformer");
  }
  void check_out(std::size_t n) const {
    if (n != layout_.total)
      throw InvalidArgument("Transformer: gradient buffer has size " + std::to_string(n) + " but num_parameters() is " +
                            std::to_string(layout_.total));
  }
  void check_vocab_out(std::size_t n) const {
    if (n != config_.vocab_size)
      throw InvalidArgument("Transformer: log-probability buffer has size " + std::to_string(n) +
                            " but vocab_size() is " + std::to_string(config_.vocab_size));
  }

  ConstMap param(std::size_t offset, std::size_t rows, std::size_t cols) const {
    return ConstMap(theta_.data() + offset, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  }
  static MutMap grad(Scalar* g, std::size_t offset, std::size_t rows, std::size_t cols) {
    return MutMap(g + offset, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  }
  // Zeroes the entries of g outside the linear layers: the embeddings and the LayerNorms' gains and biases.
  void zero_outside_linear_layers(Scalar* g) const {
    const std::size_t C = config_.width;
    std::fill_n(g + layout_.token_embedding, C * config_.vocab_size, Scalar(0));
    std::fill_n(g + layout_.position_embedding, C * config_.context_length, Scalar(0));
    for (const auto& b : layout_.blocks)
      for (std::size_t at : {b.ln1_gain, b.ln1_bias, b.ln2_gain, b.ln2_bias}) std::fill_n(g + at, C, Scalar(0));
    std::fill_n(g + layout_.final_gain, C, Scalar(0));
    std::fill_n(g + layout_.final_bias, C, Scalar(0));
  }

  // Resizes only when the chunk needs more columns than any before, so a warm workspace never allocates.
  // The first column of head h's T×T attention block of the sequence at offset o: the sequence's H
  // blocks lie side by side from column o·H. The position depends on the chunk alone, not on the
  // workspace's capacity, so a chunk's float results do not depend on which workspace (thread) ran it or
  // on what that workspace ran before (Eigen's vectorised loops round by the address alignment).
  Eigen::Index probs_column(Eigen::Index o, Eigen::Index h, Eigen::Index T) const {
    return o * static_cast<Eigen::Index>(config_.num_heads) + h * T;
  }

  void reserve(Workspace& ws, Eigen::Index n) const {
    if (static_cast<std::size_t>(n) <= ws.capacity && ws.layers.size() == config_.num_layers) return;
    const Eigen::Index cap = std::max<Eigen::Index>(n, static_cast<Eigen::Index>(ws.capacity));
    const auto C = static_cast<Eigen::Index>(config_.width), F = static_cast<Eigen::Index>(config_.mlp_ratio) * C,
               V = static_cast<Eigen::Index>(config_.vocab_size), H = static_cast<Eigen::Index>(config_.num_heads),
               T = static_cast<Eigen::Index>(config_.context_length);
    ws.layers.resize(config_.num_layers);
    for (auto& lc : ws.layers) {
      lc.ln1_xhat.resize(C, cap);
      lc.ln1_out.resize(C, cap);
      lc.qkv.resize(3 * C, cap);
      lc.probs.resize(T, H * cap);
      lc.attn.resize(C, cap);
      lc.ln2_xhat.resize(C, cap);
      lc.ln2_out.resize(C, cap);
      lc.fc_pre.resize(F, cap);
      lc.fc_tanh.resize(F, cap);
      lc.fc_act.resize(F, cap);
      lc.ln1_rstd.resize(cap);
      lc.ln2_rstd.resize(cap);
    }
    ws.x.resize(C, cap);
    ws.lnf_xhat.resize(C, cap);
    ws.lnf_out.resize(C, cap);
    ws.lnf_rstd.resize(cap);
    ws.logits.resize(V, cap);
    ws.dx.resize(C, cap);
    ws.dtmp.resize(C, cap);
    ws.dln.resize(C, cap);
    ws.dqkv.resize(3 * C, cap);
    ws.dfc.resize(F, cap);
    ws.dscores.resize(T, T);
    ws.capacity = static_cast<std::size_t>(cap);
  }

  // y = γ ⊙ x̂ + β, x̂ = (x − μ)·rstd per column.
  template <class In, class Xhat, class Out>
  static void layer_norm(const In& x, const ConstMap& gain, const ConstMap& bias, Xhat&& xhat, RowVec& rstd_store,
                         Out&& out) {
    const Eigen::Index n = x.cols();
    const Scalar inv_c = Scalar(1) / static_cast<Scalar>(x.rows());
    for (Eigen::Index j = 0; j < n; ++j) {
      const Scalar mean = x.col(j).sum() * inv_c;
      xhat.col(j) = x.col(j).array() - mean;
      const Scalar var = xhat.col(j).squaredNorm() * inv_c;
      const Scalar rstd = Scalar(1) / std::sqrt(var + kLayerNormEpsilon);
      rstd_store[j] = rstd;
      xhat.col(j) *= rstd;
    }
    out = ((xhat.array().colwise() * gain.col(0).array()).colwise() + bias.col(0).array()).matrix();
  }

  // Accumulates dγ, dβ and writes dx = rstd·(d x̂ − mean(d x̂) − x̂ ⊙ mean(d x̂ ⊙ x̂)), d x̂ = dy ⊙ γ.
  template <class Dy, class Xhat, class Rstd, class Dx>
  static void layer_norm_backward(const Dy& dy, const Xhat& xhat, const Rstd& rstd, const ConstMap& gain,
                                  MutMap dgain, MutMap dbias, Dx&& dx) {
    const Eigen::Index n = dy.cols();
    dgain.col(0).noalias() += (dy.array() * xhat.array()).rowwise().sum().matrix();
    dbias.col(0).noalias() += dy.rowwise().sum();
    const Scalar inv_c = Scalar(1) / static_cast<Scalar>(dy.rows());
    dx = (dy.array().colwise() * gain.col(0).array()).matrix();  // d x̂
    for (Eigen::Index j = 0; j < n; ++j) {
      const Scalar m1 = dx.col(j).sum() * inv_c;
      const Scalar m2 = dx.col(j).dot(xhat.col(j)) * inv_c;
      dx.col(j) = (dx.col(j).array() - m1 - xhat.col(j).array() * m2) * rstd[j];
    }
  }

  // GELU, tanh form (GPT-2): gelu(x) = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³). Whole-matrix array
  // expressions so that Eigen's vectorised tanh is used; tanh u is kept for the backward pass.
  static constexpr Scalar kGeluScale = Scalar(0.7978845608028654), kGeluCubic = Scalar(0.044715);
  template <class Pre, class Tanh, class Act>
  static void gelu(const Pre& pre, Tanh&& tanh_u, Act&& act) {
    const auto x = pre.array();
    tanh_u.array() = (kGeluScale * (x + kGeluCubic * x.cube())).tanh();
    act.array() = Scalar(0.5) * x * (Scalar(1) + tanh_u.array());
  }
  // d gelu/dx = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), t = tanh u; multiplies d in place.
  template <class Pre, class Tanh, class D>
  static void gelu_backward(const Pre& pre, const Tanh& tanh_u, D&& d) {
    const auto x = pre.array();
    const auto t = tanh_u.array();
    d.array() *= Scalar(0.5) * (Scalar(1) + t) +
                 (Scalar(0.5) * kGeluScale) * x * (Scalar(1) - t.square()) * (Scalar(1) + (Scalar(3) * kGeluCubic) * x.square());
  }

  // Forward (and backward when g != nullptr) over a chunk of sequences. With g, *overwrites* g with
  // Σ_s ∇loss(s). Returns Σ_s loss(s) (0 for Targets::none, the sampled NLL sum for Targets::sampled).
  // After return ws.logits holds log-probabilities (when g == nullptr).
  // With a visitor (K-FAC statistics) the backward seeds are √(1/T_s) instead of 1/T_s (see
  // visit_linear_layers) and every linear layer's inputs and output gradients are handed to it.
  // split_scores (a visitor that reads no linear-layer score): g holds one vector of num_parameters() per
  // sequence, and sequence s's entries outside the linear layers are overwritten in g + s·total with its
  // own score; the linear layers' entries are not touched.
  Scalar run_chunk(Workspace& ws, std::span<const Sample* const> seqs, Scalar* g, Targets targets,
                   std::mt19937_64* rng, LinearLayerVisitor<Scalar>* visitor = nullptr,
                   std::size_t first_sample = 0, bool split_scores = false) const {
    const std::size_t C = config_.width, F = config_.mlp_ratio * C, V = config_.vocab_size, Hh = config_.num_heads;
    const std::size_t hd = C / Hh;
    const auto Ci = static_cast<Eigen::Index>(C), hdi = static_cast<Eigen::Index>(hd);
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(hd));

    Eigen::Index n = 0;
    ws.seq_offset.clear();
    ws.seq_length.clear();
    for (const Sample* s : seqs) {
      ws.seq_offset.push_back(n);
      ws.seq_length.push_back(static_cast<Eigen::Index>(s->tokens.size()) - 1);
      n += static_cast<Eigen::Index>(s->tokens.size()) - 1;
    }
    reserve(ws, n);
    const std::size_t S = seqs.size();

    // ---- forward ----
    const ConstMap wte = param(layout_.token_embedding, C, V);
    const ConstMap wpe = param(layout_.position_embedding, C, config_.context_length);
    auto x = ws.x.leftCols(n);
    for (std::size_t s = 0; s < S; ++s)
      for (Eigen::Index t = 0; t < ws.seq_length[s]; ++t)
        x.col(ws.seq_offset[s] + t) = wte.col(seqs[s]->tokens[static_cast<std::size_t>(t)]) + wpe.col(t);

    for (std::size_t l = 0; l < config_.num_layers; ++l) {
      const auto& b = layout_.blocks[l];
      LayerCache& lc = ws.layers[l];
      layer_norm(x, param(b.ln1_gain, C, 1), param(b.ln1_bias, C, 1), lc.ln1_xhat.leftCols(n), lc.ln1_rstd,
                 lc.ln1_out.leftCols(n));
      auto qkv = lc.qkv.leftCols(n);
      qkv.noalias() = param(b.qkv_weight, 3 * C, C) * lc.ln1_out.leftCols(n);
      qkv.colwise() += param(b.qkv_bias, 3 * C, 1).col(0);
      for (std::size_t s = 0; s < S; ++s) {
        const Eigen::Index o = ws.seq_offset[s], T = ws.seq_length[s];
        for (std::size_t h = 0; h < Hh; ++h) {
          const auto hi = static_cast<Eigen::Index>(h);
          auto q = qkv.block(hi * hdi, o, hdi, T);
          auto k = qkv.block(Ci + hi * hdi, o, hdi, T);
          auto v = qkv.block(2 * Ci + hi * hdi, o, hdi, T);
          // probs(j, i) = p(query i attends to key j), j <= i; column i of a T×T block.
          auto p = lc.probs.block(0, probs_column(o, hi, T), T, T);
          p.noalias() = (k.transpose() * q) * scale;
          for (Eigen::Index i = 0; i < T; ++i) {
            auto col = p.col(i).head(i + 1);
            const Scalar m = col.maxCoeff();
            col = (col.array() - m).exp();
            col /= col.sum();
            if (i + 1 < T) p.col(i).tail(T - i - 1).setZero();
          }
          lc.attn.block(hi * hdi, o, hdi, T).noalias() = v * p;
        }
      }
      x.noalias() += param(b.out_weight, C, C) * lc.attn.leftCols(n);
      x.colwise() += param(b.out_bias, C, 1).col(0);
      layer_norm(x, param(b.ln2_gain, C, 1), param(b.ln2_bias, C, 1), lc.ln2_xhat.leftCols(n), lc.ln2_rstd,
                 lc.ln2_out.leftCols(n));
      auto fc_pre = lc.fc_pre.leftCols(n);
      fc_pre.noalias() = param(b.fc_weight, F, C) * lc.ln2_out.leftCols(n);
      fc_pre.colwise() += param(b.fc_bias, F, 1).col(0);
      gelu(fc_pre, lc.fc_tanh.leftCols(n), lc.fc_act.leftCols(n));
      x.noalias() += param(b.proj_weight, C, F) * lc.fc_act.leftCols(n);
      x.colwise() += param(b.proj_bias, C, 1).col(0);
    }
    layer_norm(x, param(layout_.final_gain, C, 1), param(layout_.final_bias, C, 1), ws.lnf_xhat.leftCols(n),
               ws.lnf_rstd, ws.lnf_out.leftCols(n));
    auto logits = ws.logits.leftCols(n);
    logits.noalias() = wte.transpose() * ws.lnf_out.leftCols(n);
    // log-softmax per column
    {
      const RowVec m = logits.colwise().maxCoeff();
      logits.rowwise() -= m;
      const RowVec lse = logits.array().exp().colwise().sum().log().matrix();
      logits.rowwise() -= lse;
    }

    // targets and the loss
    ws.targets.resize(static_cast<std::size_t>(n));
    ws.factor.resize(static_cast<std::size_t>(n));
    Scalar total = 0;
    if (targets != Targets::none) {
      for (std::size_t s = 0; s < S; ++s) {
        const Eigen::Index o = ws.seq_offset[s], T = ws.seq_length[s];
        if (!seqs[s]->targets.plain()) {
          total += weighted_targets(ws, *seqs[s], logits.middleCols(o, T), o, targets, rng);
          continue;
        }
        Scalar seq_sum = 0;
        for (Eigen::Index t = 0; t < T; ++t) {
          Token y;
          if (targets == Targets::observed) {
            y = seqs[s]->tokens[static_cast<std::size_t>(t) + 1];
          } else {
            y = sample_token(logits.col(o + t), *rng);
          }
          ws.targets[static_cast<std::size_t>(o + t)] = y;
          seq_sum -= logits(y, o + t);
        }
        total += seq_sum / static_cast<Scalar>(T);
      }
    }
    if (g == nullptr) return total;

    // ---- backward ----
    // out(s): where sequence s's score goes (all sequences share g unless split_scores)
    const auto out = [&](std::size_t s) { return split_scores ? g + s * layout_.total : g; };
    if (split_scores) {
      for (std::size_t s = 0; s < S; ++s) zero_outside_linear_layers(out(s));
    } else {
      as_eigen<Scalar>(std::span<Scalar>(g, layout_.total)).setZero();
    }
    // dlogits = (softmax − onehot)/T_s, in place of the log-probabilities.
    logits = logits.array().exp().matrix();
    for (std::size_t s = 0; s < S; ++s) {
      const Eigen::Index o = ws.seq_offset[s], T = ws.seq_length[s];
      if (!seqs[s]->targets.plain()) {
        weighted_logit_gradient(ws, seqs[s]->targets, logits.middleCols(o, T), o, visitor != nullptr);
        continue;
      }
      const Scalar w = visitor != nullptr ? Scalar(1) / std::sqrt(static_cast<Scalar>(T))
                                          : Scalar(1) / static_cast<Scalar>(T);
      for (Eigen::Index t = 0; t < T; ++t) logits(ws.targets[static_cast<std::size_t>(o + t)], o + t) -= Scalar(1);
      logits.middleCols(o, T) *= w;
    }
    ws.seq_columns.assign(ws.seq_offset.begin(), ws.seq_offset.end());
    ws.seq_columns.push_back(n);
    // Hands layer `index` of block li its inputs (in×n) and output gradients (out×n) for this chunk, without
    // the positions of weight 0 whose output gradient is exactly 0 (they would only dilute A).
    std::vector<char> masked;
    ::fisher_unlearn::detail::LayerStatisticsForwarder<Scalar> forward_statistics;
    if (visitor != nullptr) {
      masked.resize(static_cast<std::size_t>(n));
      for (std::size_t j = 0; j < masked.size(); ++j) masked[j] = ws.targets[j] == kSkipped;
    }
    auto visit = [&](std::size_t li, std::size_t index, const auto& inputs, const auto& output_gradients) {
      if (visitor == nullptr) return;
      forward_statistics(*visitor, 4 * li + index, first_sample, std::span<const Eigen::Index>(ws.seq_columns),
                         std::span<const char>(masked), inputs, output_gradients);
    };
    // What is needed of g: all of it (a gradient, or a visitor's whole scores), the entries outside the
    // linear layers only (a visitor that reads its scores there only: the weight-gradient GEMMs are
    // skipped, their entries stay 0), or none (a visitor without sample scores: also the unembedding GEMM).
    const bool other_grads = visitor == nullptr || visitor->wants_sample_gradients();
    const bool linear_grads = other_grads && !split_scores && (visitor == nullptr || visitor->wants_linear_layer_scores());
    if (other_grads) {
      if (split_scores) {
        for (std::size_t s = 0; s < S; ++s) {
          const Eigen::Index o = ws.seq_offset[s], T = ws.seq_length[s];
          grad(out(s), layout_.token_embedding, C, V).noalias() +=
              ws.lnf_out.middleCols(o, T) * logits.middleCols(o, T).transpose();
        }
      } else {
        grad(g, layout_.token_embedding, C, V).noalias() += ws.lnf_out.leftCols(n) * logits.transpose();
      }
    }
    auto dln = ws.dln.leftCols(n);
    dln.noalias() = wte * logits;
    auto dx = ws.dx.leftCols(n);
    auto dtmp = ws.dtmp.leftCols(n);
    // A LayerNorm's backward, its gain and bias gradients per sequence under split_scores.
    const auto norm_backward = [&](const auto& dy, const auto& xhat, const RowVec& rstd, std::size_t gain,
                                   std::size_t bias, auto&& dx_out) {
      if (!split_scores) {
        layer_norm_backward(dy, xhat, rstd.leftCols(n), param(gain, C, 1), grad(g, gain, C, 1), grad(g, bias, C, 1), dx_out);
        return;
      }
      for (std::size_t s = 0; s < S; ++s) {
        const Eigen::Index o = ws.seq_offset[s], T = ws.seq_length[s];
        layer_norm_backward(dy.middleCols(o, T), xhat.middleCols(o, T), rstd.segment(o, T), param(gain, C, 1),
                            grad(out(s), gain, C, 1), grad(out(s), bias, C, 1), dx_out.middleCols(o, T));
      }
    };
    norm_backward(dln, ws.lnf_xhat.leftCols(n), ws.lnf_rstd, layout_.final_gain, layout_.final_bias, dx);

    for (std::size_t li = config_.num_layers; li-- > 0;) {
      const auto& b = layout_.blocks[li];
      LayerCache& lc = ws.layers[li];
      // MLP: x ← x + W₂·gelu(W₁·LN₂(x) + b₁) + b₂
      visit(li, 3, lc.fc_act.leftCols(n), dx);
      if (linear_grads) {
        grad(g, b.proj_weight, C, F).noalias() += dx * lc.fc_act.leftCols(n).transpose();
        grad(g, b.proj_bias, C, 1).col(0).noalias() += dx.rowwise().sum();
      }
      auto dfc = ws.dfc.leftCols(n);
      dfc.noalias() = param(b.proj_weight, C, F).transpose() * dx;
      gelu_backward(lc.fc_pre.leftCols(n), lc.fc_tanh.leftCols(n), dfc);
      visit(li, 2, lc.ln2_out.leftCols(n), dfc);
      if (linear_grads) {
        grad(g, b.fc_weight, F, C).noalias() += dfc * lc.ln2_out.leftCols(n).transpose();
        grad(g, b.fc_bias, F, 1).col(0).noalias() += dfc.rowwise().sum();
      }
      dln.noalias() = param(b.fc_weight, F, C).transpose() * dfc;
      norm_backward(dln, lc.ln2_xhat.leftCols(n), lc.ln2_rstd, b.ln2_gain, b.ln2_bias, dtmp);
      dx += dtmp;
      // attention: x ← x + W_o·Attn(LN₁(x)) + b_o
      visit(li, 1, lc.attn.leftCols(n), dx);
      if (linear_grads) {
        grad(g, b.out_weight, C, C).noalias() += dx * lc.attn.leftCols(n).transpose();
        grad(g, b.out_bias, C, 1).col(0).noalias() += dx.rowwise().sum();
      }
      dtmp.noalias() = param(b.out_weight, C, C).transpose() * dx;  // d attn
      auto qkv = lc.qkv.leftCols(n);
      auto dqkv = ws.dqkv.leftCols(n);
      for (std::size_t s = 0; s < S; ++s) {
        const Eigen::Index o = ws.seq_offset[s], T = ws.seq_length[s];
        for (std::size_t h = 0; h < Hh; ++h) {
          const auto hi = static_cast<Eigen::Index>(h);
          auto q = qkv.block(hi * hdi, o, hdi, T);
          auto k = qkv.block(Ci + hi * hdi, o, hdi, T);
          auto v = qkv.block(2 * Ci + hi * hdi, o, hdi, T);
          auto p = lc.probs.block(0, probs_column(o, hi, T), T, T);
          auto dout = dtmp.block(hi * hdi, o, hdi, T);
          dqkv.block(2 * Ci + hi * hdi, o, hdi, T).noalias() = dout * p.transpose();
          auto ds = ws.dscores.topLeftCorner(T, T);
          ds.noalias() = v.transpose() * dout;  // dP
          for (Eigen::Index i = 0; i < T; ++i) {
            const Scalar dot = p.col(i).head(i + 1).dot(ds.col(i).head(i + 1));
            ds.col(i) = (p.col(i).array() * (ds.col(i).array() - dot)) * scale;  // zero where p = 0
          }
          dqkv.block(hi * hdi, o, hdi, T).noalias() = k * ds;
          dqkv.block(Ci + hi * hdi, o, hdi, T).noalias() = q * ds.transpose();
        }
      }
      visit(li, 0, lc.ln1_out.leftCols(n), dqkv);
      if (linear_grads) {
        grad(g, b.qkv_weight, 3 * C, C).noalias() += dqkv * lc.ln1_out.leftCols(n).transpose();
        grad(g, b.qkv_bias, 3 * C, 1).col(0).noalias() += dqkv.rowwise().sum();
        // The key bias shifts every score of a query by the same q·b, to which softmax is invariant: its
        // derivative is exactly 0. Write that 0 instead of the rounding residue of Σ dK (which is not
        // zero-mean and would bias Fisher estimates on these coordinates).
        grad(g, b.qkv_bias + C, C, 1).setZero();
      }
      dln.noalias() = param(b.qkv_weight, 3 * C, C).transpose() * dqkv;
      norm_backward(dln, lc.ln1_xhat.leftCols(n), lc.ln1_rstd, b.ln1_gain, b.ln1_bias, dtmp);
      dx += dtmp;
    }
    for (std::size_t s = 0; s < S; ++s) {
      MutMap dwte = grad(out(s), layout_.token_embedding, C, V);
      MutMap dwpe = grad(out(s), layout_.position_embedding, C, config_.context_length);
      for (Eigen::Index t = 0; t < ws.seq_length[s]; ++t) {
        const auto col = dx.col(ws.seq_offset[s] + t);
        dwte.col(seqs[s]->tokens[static_cast<std::size_t>(t)]) += col;
        dwpe.col(t) += col;
      }
    }
    return total;
  }

  // A weighted sample's targets (observed, soft, or drawn at positions of positive weight) and factors
  // ∂loss/∂ℓₜ; returns its loss c·Σₜ wₜℓₜ (at the drawn targets when sampling). log_probs: V×T.
  template <class LogProbs>
  Scalar weighted_targets(Workspace& ws, const Sample& s, const LogProbs& log_probs, Eigen::Index o, Targets targets,
                          std::mt19937_64* rng) const {
    const SequenceTargets& st = s.targets;
    const Eigen::Index T = log_probs.cols();
    double weight_sum = 0.0;
    for (Eigen::Index t = 0; t < T; ++t) weight_sum += st.weight(static_cast<std::size_t>(t));
    const double c = 1.0 / weight_sum;
    Scalar sum = 0;
    for (Eigen::Index t = 0; t < T; ++t) {
      const auto ti = static_cast<std::size_t>(t), at = static_cast<std::size_t>(o + t);
      const double w = st.weight(ti);
      if (w == 0.0) {
        ws.targets[at] = kSkipped;
        ws.factor[at] = Scalar(0);
        continue;
      }
      if (targets == Targets::sampled) {
        const Token y = sample_token(log_probs.col(t), *rng);
        ws.targets[at] = y;
        ws.factor[at] = static_cast<Scalar>(c * std::sqrt(w));
        sum -= static_cast<Scalar>(w) * log_probs(y, t);
        continue;
      }
      ws.factor[at] = static_cast<Scalar>(c * w);
      if (const SoftTarget* q = st.soft(ti)) {
        ws.targets[at] = soft_code(st.soft_target[ti]);
        Scalar cross_entropy = 0;
        for (std::size_t k = 0; k < q->tokens.size(); ++k)
          cross_entropy -= static_cast<Scalar>(q->probability(k)) * log_probs(q->tokens[k], t);
        sum += static_cast<Scalar>(w) * cross_entropy;
      } else {
        const Token y = s.tokens[ti + 1];
        ws.targets[at] = y;
        sum -= static_cast<Scalar>(w) * log_probs(y, t);
      }
    }
    return sum * static_cast<Scalar>(c);
  }

  // dlogits of a weighted sample, in place of its probabilities (V×T): factorₜ·(p − qₜ), 0 where wₜ = 0.
  // per_sample_score (the K-FAC visitor): every factor divided by √c, as the plain path seeds 1/√T.
  template <class Probs>
  void weighted_logit_gradient(const Workspace& ws, const SequenceTargets& st, Probs&& probs, Eigen::Index o,
                               bool per_sample_score) const {
    Scalar rescale(1);
    if (per_sample_score) {
      double weight_sum = 0.0;
      for (Eigen::Index t = 0; t < probs.cols(); ++t) weight_sum += st.weight(static_cast<std::size_t>(t));
      rescale = static_cast<Scalar>(std::sqrt(weight_sum));
    }
    for (Eigen::Index t = 0; t < probs.cols(); ++t) {
      const auto at = static_cast<std::size_t>(o + t);
      auto col = probs.col(t);
      const Token y = ws.targets[at];
      if (y == kSkipped) {
        col.setZero();
        continue;
      }
      if (y >= 0) {
        col(y) -= Scalar(1);
      } else {
        const SoftTarget& q = st.soft_targets[static_cast<std::size_t>(soft_index(y))];
        for (std::size_t k = 0; k < q.tokens.size(); ++k) col(q.tokens[k]) -= static_cast<Scalar>(q.probability(k));
      }
      col *= ws.factor[at] * rescale;
    }
  }

  // Inverse-CDF draw from exp(log_probs), accumulated in double so the draw does not depend on
  // float rounding of the running sum beyond the probabilities themselves.
  template <class Col>
  static Token sample_token(const Col& log_probs, std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    double acc = 0.0;
    const Eigen::Index V = log_probs.size();
    for (Eigen::Index v = 0; v < V; ++v) {
      acc += std::exp(static_cast<double>(log_probs[v]));
      if (u < acc) return static_cast<Token>(v);
    }
    // u landed in the rounding gap at the top of the CDF: take the last token with positive mass.
    for (Eigen::Index v = V; v-- > 0;)
      if (std::exp(static_cast<double>(log_probs[v])) > 0.0) return static_cast<Token>(v);
    return static_cast<Token>(V - 1);
  }

  // One decoding step: append token at position st.tokens.size(), update caches and log_probs.
  void step_one(DecodeState& st, Token token) const {
    const std::size_t C = config_.width, F = config_.mlp_ratio * C, V = config_.vocab_size, Hh = config_.num_heads;
    const std::size_t hd = C / Hh, pos = st.tokens.size();
    const auto Ci = static_cast<Eigen::Index>(C), hdi = static_cast<Eigen::Index>(hd);
    const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(hd));
    const ConstMap wte = param(layout_.token_embedding, C, V);
    Vec x = wte.col(token) + param(layout_.position_embedding, C, config_.context_length).col(static_cast<Eigen::Index>(pos));
    Mat xhat(Ci, 1), y(Ci, 1);
    RowVec rstd(1);
    Vec qkv(3 * Ci), attn(Ci), hidden(static_cast<Eigen::Index>(F)), hidden_tanh(static_cast<Eigen::Index>(F)), scores;
    const auto npos = static_cast<Eigen::Index>(pos + 1);
    for (std::size_t l = 0; l < config_.num_layers; ++l) {
      const auto& b = layout_.blocks[l];
      layer_norm(x, param(b.ln1_gain, C, 1), param(b.ln1_bias, C, 1), xhat, rstd, y);
      qkv.noalias() = param(b.qkv_weight, 3 * C, C) * y.col(0);
      qkv += param(b.qkv_bias, 3 * C, 1).col(0);
      auto& keys = st.keys[l];
      auto& values = st.values[l];
      keys.insert(keys.end(), qkv.data() + Ci, qkv.data() + 2 * Ci);
      values.insert(values.end(), qkv.data() + 2 * Ci, qkv.data() + 3 * Ci);
      const ConstMap K(keys.data(), Ci, npos), Vv(values.data(), Ci, npos);
      for (std::size_t h = 0; h < Hh; ++h) {
        const auto hi = static_cast<Eigen::Index>(h);
        scores.noalias() = (K.middleRows(hi * hdi, hdi).transpose() * qkv.segment(hi * hdi, hdi)) * scale;
        const Scalar m = scores.maxCoeff();
        scores = (scores.array() - m).exp();
        scores /= scores.sum();
        attn.segment(hi * hdi, hdi).noalias() = Vv.middleRows(hi * hdi, hdi) * scores;
      }
      x.noalias() += param(b.out_weight, C, C) * attn;
      x += param(b.out_bias, C, 1).col(0);
      layer_norm(x, param(b.ln2_gain, C, 1), param(b.ln2_bias, C, 1), xhat, rstd, y);
      hidden.noalias() = param(b.fc_weight, F, C) * y.col(0);
      hidden += param(b.fc_bias, F, 1).col(0);
      gelu(Vec(hidden), hidden_tanh, hidden);
      x.noalias() += param(b.proj_weight, C, F) * hidden;
      x += param(b.proj_bias, C, 1).col(0);
    }
    layer_norm(x, param(layout_.final_gain, C, 1), param(layout_.final_bias, C, 1), xhat, rstd, y);
    Vec logits = wte.transpose() * y.col(0);
    const Scalar m = logits.maxCoeff();
    logits.array() -= m;
    logits.array() -= std::log(logits.array().exp().sum());
    st.log_probs.assign(logits.data(), logits.data() + logits.size());
    st.tokens.push_back(token);
  }

  TransformerConfig config_;
  TransformerLayout layout_;
  Vec theta_;
  TransformerExecution execution_;
  mutable WorkspacePool pool_;
};

static_assert(DifferentiableModel<Transformer<float>> && DifferentiableModel<Transformer<double>>);
static_assert(LinearLayerModel<Transformer<float>> && LinearLayerModel<Transformer<double>>);

}  // namespace fisher_unlearn::models
