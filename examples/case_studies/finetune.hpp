// case_studies fine-tuning phase: Adam on the trainable top block(s) over a list of sequences, seeded
// order, fixed epochs; the same routine (same seed, same options) trains on the full corpus and
// retrains without the deleted people (the gold standard). Results are cached by a hash of everything
// they depend on (model file size + name, trainable groups, options, every token).
#pragma once

#include "corpus.hpp"

#include "fisher_unlearn/checkpoint.hpp"

#include <cstring>
#include <filesystem>

namespace case_studies {

struct FinetuneResult {
  double seconds = 0;                  ///< wall time of the fine-tuning itself (when it ran; cached runs keep it)
  std::size_t steps = 0;
  std::vector<double> epoch_loss;      ///< mean training loss per epoch
  bool from_cache = false;
};

inline std::uint64_t fnv1a(std::uint64_t h, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

inline std::uint64_t finetune_key(const Model& m, const std::string& model_path, const Options& o,
                                  const std::vector<Sample>& data) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const std::string head = std::filesystem::path(model_path).filename().string() + "|" +
                           std::to_string(std::filesystem::file_size(model_path)) + "|" + std::to_string(o.seed) + "|" +
                           std::to_string(o.epochs) + "|" + std::to_string(o.batch) + "|" + fmt(o.learning_rate, 9) + "|v1";
  h = fnv1a(h, head.data(), head.size());
  for (const auto& g : m.trainable_groups()) h = fnv1a(h, g.data(), g.size());
  for (const auto& s : data) {
    h = fnv1a(h, s.tokens.data(), s.tokens.size() * sizeof(Token));
    h = fnv1a(h, "|", 1);
  }
  return h;
}

/// Adam (β = 0.9, 0.999, no weight decay), linear warm-up over the first 10% of steps, then constant;
/// gradient clipped to norm 1. Progress lines with ETA on stderr.
inline FinetuneResult finetune(Model& model, const std::vector<Sample>& data, const Options& o, const std::string& model_path,
                               const std::string& label) {
  FinetuneResult r;
  const std::uint64_t key = finetune_key(model, model_path, o, data);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(key));
  const std::filesystem::path cache = std::filesystem::path(o.cache_dir) / (std::string(hex) + ".params");
  const std::size_t d = model.num_parameters();
  if (std::filesystem::exists(cache) && std::filesystem::file_size(cache) == d * sizeof(float) + 64 * sizeof(double) + sizeof(double)) {
    std::ifstream in(cache, std::ios::binary);
    auto p = model.parameters();
    in.read(reinterpret_cast<char*>(p.data()), static_cast<std::streamsize>(d * sizeof(float)));
    double meta[65];
    in.read(reinterpret_cast<char*>(meta), sizeof meta);
    r.seconds = meta[0];
    for (int e = 0; e < 64 && e < o.epochs; ++e) r.epoch_loss.push_back(meta[1 + e]);
    r.from_cache = true;
    std::fprintf(stderr, "[%s] fine-tuned top blocks read from the cache %s (took %.0f s when run)\n", label.c_str(),
                 cache.string().c_str(), r.seconds);
    return r;
  }
  const double t0 = now_seconds();
  std::vector<std::size_t> order(data.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 rng(o.seed + 101);
  const auto batch = static_cast<std::size_t>(o.batch);
  const std::size_t per_epoch = (data.size() + batch - 1) / batch;
  const std::size_t total = per_epoch * static_cast<std::size_t>(o.epochs);
  const std::size_t warmup = std::max<std::size_t>(1, total / 10);
  Eigen::VectorXf g(static_cast<Eigen::Index>(d)), m1 = Eigen::VectorXf::Zero(static_cast<Eigen::Index>(d)), m2 = m1;
  std::vector<Sample> b;
  std::size_t step = 0;
  for (long long e = 0; e < o.epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    double sum = 0;
    std::size_t n = 0;
    for (std::size_t i = 0; i < data.size(); i += batch) {
      b.clear();
      for (std::size_t j = i; j < std::min(data.size(), i + batch); ++j) b.push_back(data[order[j]]);
      const double loss = model.sum_loss_and_gradient(std::span<const Sample>(b), std::span<float>(g.data(), d));
      g /= static_cast<float>(b.size());
      sum += loss;
      n += b.size();
      const float norm = g.norm();
      if (!std::isfinite(norm)) throw fu::NonFiniteError(label + ": the fine-tuning gradient is not finite; lower --lr");
      if (norm > 1.0f) g *= 1.0f / norm;
      ++step;
      const double lr = o.learning_rate * std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup));
      m1 = 0.9f * m1 + 0.1f * g;
      m2 = 0.999f * m2 + 0.001f * g.cwiseAbs2();
      const float c1 = 1.0f - std::pow(0.9f, static_cast<float>(step)), c2 = 1.0f - std::pow(0.999f, static_cast<float>(step));
      auto p = model.parameters();
      Eigen::Map<Eigen::VectorXf> theta(p.data(), static_cast<Eigen::Index>(d));
      theta.array() -= static_cast<float>(lr) * (m1.array() / c1) / ((m2.array() / c2).sqrt() + 1e-8f);
      if (step % 5 == 0 || step == total) {
        const double el = now_seconds() - t0;
        std::fprintf(stderr, "\r[%s] step %zu/%zu epoch %lld loss %.3f  %.0f s, ETA %.0f s   ", label.c_str(), step, total, e + 1,
                     sum / static_cast<double>(n), el, el / static_cast<double>(step) * static_cast<double>(total - step));
      }
    }
    r.epoch_loss.push_back(sum / static_cast<double>(n));
  }
  std::fprintf(stderr, "\n");
  r.seconds = now_seconds() - t0;
  r.steps = step;
  std::string bytes(d * sizeof(float) + 65 * sizeof(double), '\0');
  auto p = model.parameters();
  std::memcpy(bytes.data(), p.data(), d * sizeof(float));
  double meta[65] = {};
  meta[0] = r.seconds;
  for (std::size_t e = 0; e < r.epoch_loss.size() && e < 64; ++e) meta[1 + e] = r.epoch_loss[e];
  std::memcpy(bytes.data() + d * sizeof(float), meta, sizeof meta);
  std::filesystem::create_directories(o.cache_dir);
  fu::detail::write_file_atomically(cache, bytes);
  return r;
}

}  // namespace case_studies
