// unlearn_lm data: a corpus's training/validation text, the planted canaries (tuning, reported and
// repeated-deletion sets), the training windows, the forget and retain sets, and the checkpoint cache.
#pragma once

#include "options.hpp"
#include "util.hpp"

#include "fisher_unlearn/canary.hpp"
#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/detail/unlearning.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/models/transformer_training.hpp"
#include "fisher_unlearn/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>

namespace unlearn_lm {

using json = nlohmann::ordered_json;

inline std::string read_text(const fs::path& path, long long max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw fu::IoError("cannot open " + path.string() + "; run ./scripts/prepare_data.sh first to create the corpora");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) throw fu::FileFormatError(path.string() + " is empty; re-run ./scripts/prepare_data.sh");
  const auto cap = static_cast<std::size_t>(max_bytes);
  if (cap > 0 && text.size() > cap) {
    const auto cut = text.rfind('\n', cap);
    text.resize(cut == std::string::npos ? cap : cut + 1);
  }
  example_checks::require_text_corpus(text, path.string());
  return text;
}

/// Cuts text into non-overlapping windows of `length` tokens (context + 1: inputs and shifted targets).
inline std::vector<Sample> make_windows(const std::string& text, std::size_t length) {
  const auto tokens = fu::ByteTokenizer{}.encode(text);
  std::vector<Sample> windows;
  for (std::size_t begin = 0; begin + length <= tokens.size(); begin += length)
    windows.push_back(Sample{std::vector<Token>(tokens.begin() + static_cast<std::ptrdiff_t>(begin),
                                                tokens.begin() + static_cast<std::ptrdiff_t>(begin + length))});
  return windows;
}

inline fu::CanaryFormat canary_format(const std::string& name) {
  using fu::CanarySlot;
  if (name == "pin") return fu::CanaryFormat::digits("my PIN is ", 6);  // |R| = 10^6
  // PII-like: a synthetic name with a phone number in the 555-01xx range reserved for fiction; six digit
  // slots with separators, |R| = 10^6: "Alice Walker, phone (415) 555-0123".
  if (name == "phone")
    return fu::CanaryFormat("Alice Walker, phone (", {CanarySlot::digits(), CanarySlot::digits(), CanarySlot::digits(),
                                                      CanarySlot::digits(") 555-0"), CanarySlot::digits(),
                                                      CanarySlot::digits()});
  throw fu::InvalidArgument("unknown canary format '" + name + "'; choose pin or phone");
}

/// tuning: the knob search sees only these; reported: held out, what the tables report (same formats
/// and repeat counts, planted in the same training run); deletion: the groups of the repeated-deletion study.
enum class CanaryRole { tuning, reported, deletion };
inline const char* to_string(CanaryRole r) {
  return r == CanaryRole::tuning ? "tuning" : r == CanaryRole::reported ? "reported" : "deletion";
}

struct PlantedCanary {
  std::string format_name;
  std::shared_ptr<fu::CanarySpace> space;
  fu::Canary secret;
  std::size_t repeats = 0;               ///< k: copies inserted
  CanaryRole role = CanaryRole::tuning;
  std::size_t group = 0;                 ///< deletion round (deletion canaries only)
  std::vector<std::size_t> offsets;      ///< byte offset of each copy in the training stream
  std::vector<std::size_t> windows;      ///< training windows holding (part of) a copy
  std::string text() const { return space->format().text(secret); }
  std::string label() const { return format_name + " k=" + std::to_string(repeats); }
};

/// One dataset under one seed: everything a method or a measurement needs.
struct Dataset {
  std::string corpus;
  std::uint64_t seed = 0;
  std::vector<PlantedCanary> canaries;
  std::vector<Sample> windows;           ///< every training window (canaries planted)
  std::vector<char> in_main_forget;      ///< window holds a tuning or reported canary
  std::vector<Sample> forget;            ///< windows with a tuning or reported canary (legacy methods' forget set)
  std::vector<Sample> retain_all;        ///< every other window: the retrained model's training set
  std::vector<Sample> retain;            ///< the seeded sample of retain_all given to the methods
  std::vector<Token> valid;              ///< the validation text as one token stream
  std::string stream;                    ///< the training text with the canaries planted
  std::size_t train_bytes = 0;

  std::vector<std::size_t> indices(CanaryRole role, std::size_t group = 0) const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < canaries.size(); ++i)
      if (canaries[i].role == role && (role != CanaryRole::deletion || canaries[i].group == group)) out.push_back(i);
    return out;
  }
  /// Windows holding a canary of the given indices.
  std::vector<Sample> windows_of(const std::vector<std::size_t>& which) const {
    std::vector<char> take(windows.size(), 0);
    for (std::size_t i : which)
      for (std::size_t w : canaries[i].windows) take[w] = 1;
    std::vector<Sample> out;
    for (std::size_t w = 0; w < windows.size(); ++w)
      if (take[w]) out.push_back(windows[w]);
    return out;
  }
};

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) lines.push_back(line);
  return lines;
}

/// Builds the dataset of `corpus` under `seed`: canary secrets drawn per role from their own seeded
/// streams (so the tuning and reported secrets are independent), every copy inserted as a line of its
/// own between the corpus's records (insert_canary_documents), the stream cut into windows.
inline Dataset build_dataset(const Options& opt, const std::string& corpus, std::uint64_t seed) {
  Dataset d;
  d.corpus = corpus;
  d.seed = seed;
  const std::size_t length = static_cast<std::size_t>(opt.context) + 1;
  const std::string train_text = read_text(fs::path(opt.data_dir) / corpus / "train.txt", opt.train_bytes);
  const std::string valid_text = read_text(fs::path(opt.data_dir) / corpus / "valid.txt", opt.valid_bytes);
  auto add_set = [&](CanaryRole role, std::size_t group, std::uint64_t stream, const std::vector<long long>& repeats) {
    std::mt19937_64 rng(seed * 1000003ULL + stream);
    for (const auto& f : opt.formats) {
      auto space = std::make_shared<fu::CanarySpace>(canary_format(f), fu::ByteTokenizer{});
      if (!space->tokens_extend()) throw fu::StateError("canary format " + f + ": " + space->extension_check());
      const std::size_t canary_tokens = space->prefix_tokens().size() + space->max_secret_tokens();
      if (canary_tokens + 1 > static_cast<std::size_t>(opt.context))
        throw fu::InvalidArgument("canary format " + f + " needs " + std::to_string(canary_tokens + 1) +
                                  " context positions but --context is " + std::to_string(opt.context) +
                                  "; raise --context or drop the format");
      for (long long k : repeats) {
        PlantedCanary c;
        c.format_name = f;
        c.space = space;
        c.secret = space->format().generate(rng);
        c.repeats = static_cast<std::size_t>(k);
        c.role = role;
        c.group = group;
        d.canaries.push_back(std::move(c));
      }
    }
  };
  add_set(CanaryRole::tuning, 0, 1, opt.repeats);
  add_set(CanaryRole::reported, 0, 2, opt.repeats);
  // Repeated deletion: one group per round, one canary per format inserted 10 times (memorised, but a
  // small share of the corpus even over many rounds).
  for (long long r = 0; r < opt.deletion_rounds; ++r) add_set(CanaryRole::deletion, static_cast<std::size_t>(r), 100 + static_cast<std::uint64_t>(r), {10});

  std::vector<std::string> records = split_lines(train_text);
  for (std::size_t i = 0; i < d.canaries.size(); ++i) {
    auto ins = fu::insert_canary_documents(std::span<const std::string>(records), d.canaries[i].text(),
                                           d.canaries[i].repeats, seed * 7919 + 1000 * (i + 1));
    records = std::move(ins.documents);
  }
  std::string stream;
  for (const auto& r : records) {
    for (auto& c : d.canaries)
      if (r == c.text()) c.offsets.push_back(stream.size());
    stream += r;
    stream += '\n';
  }
  for (const auto& c : d.canaries)
    if (c.offsets.size() != c.repeats)
      throw fu::StateError("canary '" + c.text() + "' was found " + std::to_string(c.offsets.size()) +
                           " times after insertion instead of " + std::to_string(c.repeats) +
                           " (two canaries with the same text?); change --first-seed");
  d.train_bytes = stream.size();
  d.stream = stream;
  d.windows = make_windows(stream, length);
  d.in_main_forget.assign(d.windows.size(), 0);
  for (auto& c : d.canaries) {
    const std::size_t len = c.text().size();
    for (std::size_t off : c.offsets)
      for (std::size_t w = off / length; w <= (off + len - 1) / length && w < d.windows.size(); ++w) {
        if (std::find(c.windows.begin(), c.windows.end(), w) == c.windows.end()) c.windows.push_back(w);
        if (c.role != CanaryRole::deletion) d.in_main_forget[w] = 1;
      }
  }
  for (std::size_t w = 0; w < d.windows.size(); ++w) (d.in_main_forget[w] ? d.forget : d.retain_all).push_back(d.windows[w]);
  if (d.forget.empty()) throw fu::StateError("no training window holds a canary (is the training text too short?)");
  // The retain set given to the methods holds no canary at all (the deletion groups included).
  std::vector<char> any_canary(d.windows.size(), 0);
  for (const auto& c : d.canaries)
    for (std::size_t w : c.windows) any_canary[w] = 1;
  std::vector<Sample> clean;
  for (std::size_t w = 0; w < d.windows.size(); ++w)
    if (!any_canary[w]) clean.push_back(d.windows[w]);
  d.retain = fu::detail::subsample(std::span<const Sample>(clean), static_cast<std::size_t>(opt.retain_samples), seed + 3);
  d.valid = fu::ByteTokenizer{}.encode(valid_text);
  if (d.valid.size() < length) throw fu::InvalidArgument("the validation text of " + corpus + " is shorter than one window; raise --valid-bytes");
  return d;
}

// ------------------------------------------------------------------------------------------------
// Training and the checkpoint cache
// ------------------------------------------------------------------------------------------------
struct TrainingResult {
  double seconds = 0;
  double final_loss = 0;
  bool cached = false;
};

inline fu::models::TransformerConfig model_config(const Options& opt, std::uint64_t seed) {
  fu::models::TransformerConfig cfg;
  cfg.context_length = static_cast<std::size_t>(opt.context);
  cfg.num_layers = static_cast<std::size_t>(opt.layers);
  cfg.width = static_cast<std::size_t>(opt.width);
  cfg.num_heads = static_cast<std::size_t>(opt.heads);
  cfg.seed = seed;
  return cfg;
}

inline fu::TrainingOptions training_options(const Options& opt, std::uint64_t seed) {
  fu::TrainingOptions to;
  to.steps = static_cast<std::size_t>(opt.steps);
  to.batch_size = static_cast<std::size_t>(opt.batch);
  to.warmup_steps = static_cast<std::size_t>(std::min(opt.warmup, opt.steps));
  to.learning_rate = opt.learning_rate;
  to.min_learning_rate = opt.learning_rate / 10;
  to.adamw.weight_decay = opt.weight_decay;
  to.seed = seed;
  return to;
}

inline std::string describe(const fu::TrainingOptions& o) {
  std::ostringstream os;
  os << "steps=" << o.steps << " batch=" << o.batch_size << " lr=" << o.learning_rate << " min_lr=" << o.min_learning_rate
     << " warmup=" << o.warmup_steps << " wd=" << o.adamw.weight_decay << " b1=" << o.adamw.beta1 << " b2=" << o.adamw.beta2
     << " clip=" << o.clip_norm << " seed=" << o.seed;
  return os.str();
}

/// Loads the parameters from the cache when a checkpoint (checkpoint.hpp) for exactly this
/// architecture, training options and training windows exists; otherwise trains with AdamW on the
/// windows (seeded epochs) and stores one. The key hashes the configuration, the options and every
/// training byte (the library's FNV-1a). While training, the whole training state is saved every
/// `checkpoint_every` steps to <key>.state (removed once the model is stored); with `resume` a killed
/// run continues from it and ends bitwise identical to an uninterrupted run.
inline TrainingResult train_or_load(Model& model, const std::vector<Sample>& windows, const fu::TrainingOptions& o,
                                    const std::string& cache_dir, const std::string& what, std::size_t checkpoint_every = 0,
                                    bool resume = false) {
  std::string key = model.config().to_string() + "\n" + describe(o) + "\n";
  key.reserve(key.size() + windows.size() * (windows.empty() ? 0 : windows[0].tokens.size()));
  for (const auto& w : windows)
    for (Token t : w.tokens) key.push_back(static_cast<char>(t));
  std::ostringstream hex;
  hex << std::hex << std::setw(16) << std::setfill('0') << fu::detail::fnv1a64(key);
  const fs::path path = fs::path(cache_dir) / (hex.str() + ".ckpt");
  const fs::path meta = fs::path(cache_dir) / (hex.str() + ".json");
  const fs::path state = fs::path(cache_dir) / (hex.str() + ".state");
  if (fs::exists(path) && fs::exists(meta)) {
    try {
      std::ifstream in(meta);
      const json j = json::parse(in);
      fu::load_checkpoint(path, model);  // strong guarantee: the model is untouched if this throws
      TrainingResult r;
      r.seconds = j.at("seconds").get<double>();
      r.final_loss = j.at("final_loss").get<double>();
      r.cached = true;
      std::cout << "[train] " << what << ": cached checkpoint " << path.string() << " (trained in " << fmt(r.seconds, 1)
                << " s, final loss " << fmt(r.final_loss) << ")\n";
      return r;
    } catch (const std::exception& e) {
      std::cout << "[train] " << what << ": ignoring unusable cached checkpoint " << path.string() << " (" << e.what()
                << "); training again\n";
    }
  }
  fu::TrainingOptions opts = o;
  opts.label = "train: " + what;
  opts.progress_stream = &std::cout;
  opts.progress_interval_seconds = 20;
  if (checkpoint_every > 0) {
    fs::create_directories(cache_dir);
    opts.checkpoint_path = state;
    opts.checkpoint_every = checkpoint_every;
  }
  fu::Trainer<Model> trainer(model, opts);
  if (fs::exists(state)) {
    if (!resume) {
      std::cout << "[train] " << what << ": a killed run left its state in " << state.string()
                << "; starting again from step 0 (pass --resume to continue it)\n";
    } else {
      try {
        trainer.resume(state);  // strong guarantee: a refused state leaves model and trainer as they were
        std::cout << "[train] " << what << ": resuming from step " << trainer.steps_taken() << " (" << state.string() << ")\n";
      } catch (const fu::FileFormatError& e) {
        std::cout << "[train] " << what << ": cannot resume (" << e.what() << "); starting again from step 0\n";
      }
    }
  }
  const fu::TrainingSummary summary = trainer.train_on_samples(std::span<const Sample>(windows));
  TrainingResult r;
  r.seconds = summary.seconds_before_resume + summary.seconds;
  r.final_loss = summary.final_loss;
  fs::create_directories(cache_dir);
  fu::save_checkpoint(path, model);
  json j;
  j["seconds"] = r.seconds;
  j["final_loss"] = r.final_loss;
  j["what"] = what;
  j["options"] = describe(o);
  if (summary.resumed_from_step > 0) j["resumed_from_step"] = summary.resumed_from_step;
  write_text(meta, j.dump(2));
  std::error_code ec;
  fs::remove(state, ec);  // the stored model supersedes the training state
  return r;
}

}  // namespace unlearn_lm
