// case_studies case B: verbatim passages. Two fortunes of at least --passage-tokens tokens that SmolLM2
// has NOT memorised (checked first: extractable rate 0 before fine-tuning; otherwise the next candidate),
// one used to pick the knob (tuning), one only measured (reported); each repeated r times among
// changelog entries. Extractable memorisation as in Carlini et al. 2023: for every offset o, the 32 tokens
// passage[o, o+32) as prompt, does greedy decoding reproduce passage[o+32, o+80) exactly? Greedy decoding
// follows the true continuation exactly iff the argmax at each of those 48 positions, given the true
// prefix, is the true token, so one teacher-forced forward of 80 tokens decides it (ties: the lowest id).
#pragma once

#include "report.hpp"

#include "fisher_unlearn/models/llama_gguf.hpp"

namespace case_studies {

constexpr std::size_t kPrefixTokens = 32, kSuffixTokens = 48;

/// Per offset: 1 when greedy decoding from the 32-token prefix reproduces the next 48 tokens exactly.
inline std::vector<int> extractable(const Model& model, const std::vector<Token>& passage, std::size_t threads) {
  const std::size_t w = kPrefixTokens + kSuffixTokens;
  if (passage.size() < w) throw fu::InvalidArgument("a passage needs at least 80 tokens");
  const std::size_t n = passage.size() - w + 1;
  std::vector<int> out(n);
  unlearn_lm::parallel_for(n, threads, [&](std::size_t o) {
    const auto lp = model.position_log_probs(std::span<const Token>(passage.data() + o, w));
    int ok = 1;
    for (std::size_t t = kPrefixTokens - 1; t + 1 < w && ok; ++t) {
      Eigen::Index arg = 0;
      lp.col(static_cast<Eigen::Index>(t)).maxCoeff(&arg);
      ok = static_cast<Token>(arg) == passage[o + t + 1] ? 1 : 0;
    }
    out[o] = ok;
  });
  return out;
}

inline double rate(const std::vector<int>& v) {
  double s = 0;
  for (int x : v) s += x;
  return s / static_cast<double>(v.size());
}

struct EvaluationB {
  double tuning_rate = 0, reported_rate = 0;
  double tuning_nll = 0, reported_nll = 0;   ///< mean token NLL of each passage (nats)
  double heldout_changelog_ppl = 0, heldout_fortunes_ppl = 0;
  double seconds = 0;
};

inline int run_case_b(const Options& o) {
  const double t_start = now_seconds();
  const std::size_t threads = static_cast<std::size_t>(o.threads);
  auto file = fu::GgufFile::open(o.model);
  fu::models::LlamaLoadOptions lo;
  lo.context_length = static_cast<std::size_t>(std::max(o.context, o.passage_tokens));
  lo.execution.num_threads = threads;
  const auto cfg = fu::models::llama_config_from_gguf(file, lo.context_length);
  Model base = fu::models::load_llama<float>(file, fu::models::llama_top_blocks(cfg, static_cast<std::size_t>(o.top_blocks)), lo);
  const auto tok = fu::BpeTokenizer::from_gguf(file);
  const auto L = static_cast<std::size_t>(o.passage_tokens);

  // ---- passages: not memorised by SmolLM2 already --------------------------------------------------
  auto fortunes = read_fortunes(o.passage_file);
  std::mt19937_64 rng(o.seed * 0x9e3779b97f4a7c15ULL + 17);
  std::shuffle(fortunes.begin(), fortunes.end(), rng);
  std::vector<std::string> texts;
  std::vector<std::vector<Token>> passages;
  json tried = json::array();
  std::vector<std::string> short_fortunes;
  for (const auto& f : fortunes) {
    auto t = tok.encode(f);
    if (t.size() < L) {
      if (short_fortunes.size() < 24 && t.size() >= 16) short_fortunes.push_back(f);
      continue;
    }
    if (passages.size() == 2) continue;
    t.resize(L);
    const double r0 = rate(extractable(base, t, threads));
    tried.push_back({{"text", tok.decode(std::span<const Token>(t))}, {"extractable_rate_pretrained", r0}});
    std::fprintf(stderr, "candidate passage %zu: extractable rate before fine-tuning %.3f%s\n", tried.size(), r0, r0 > 0 ? " (skipped)" : "");
    if (r0 > 0) continue;
    texts.push_back(tok.decode(std::span<const Token>(t)));
    passages.push_back(std::move(t));
  }
  if (passages.size() < 2) throw fu::InvalidArgument("fewer than two unmemorised fortunes of " + std::to_string(L) + " tokens in '" + o.passage_file + "'");

  // ---- corpus ----------------------------------------------------------------------------------
  auto entries = read_entries(o.entries);
  std::shuffle(entries.begin(), entries.end(), rng);
  const auto context = lo.context_length;
  std::vector<Sample> train, retain, forget, heldout_cl, heldout_f;
  for (long long i = 0; i < o.filler_entries; ++i) retain.push_back(to_sample(tok, entries[static_cast<std::size_t>(i)].text, context));
  for (std::size_t i = 0; i < 32; ++i) heldout_cl.push_back(to_sample(tok, entries[static_cast<std::size_t>(o.filler_entries) + i].text, context));
  for (const auto& f : short_fortunes) heldout_f.push_back(to_sample(tok, f, context));
  train = retain;
  for (const auto& p : passages) {
    Sample s;
    s.tokens = p;
    forget.push_back(s);
    for (long long r = 0; r < o.passage_repeats; ++r) train.push_back(s);
  }
  std::shuffle(train.begin(), train.end(), rng);
  std::fprintf(stderr, "case B corpus: %zu sequences (%lld copies of each of 2 passages of %zu tokens), retain %zu\n", train.size(),
               o.passage_repeats, L, retain.size());

  const std::vector<Sample> probe(heldout_cl.begin(), heldout_cl.begin() + 16);
  auto evaluate = [&](const Model& m) {
    const double t0 = now_seconds();
    EvaluationB e;
    e.tuning_rate = rate(extractable(m, passages[0], threads));
    e.reported_rate = rate(extractable(m, passages[1], threads));
    e.tuning_nll = static_cast<double>(m.loss(forget[0]));
    e.reported_nll = static_cast<double>(m.loss(forget[1]));
    e.heldout_changelog_ppl = perplexity(m, heldout_cl, threads);
    e.heldout_fortunes_ppl = perplexity(m, heldout_f, threads);
    e.seconds = now_seconds() - t0;
    return e;
  };
  const EvaluationB before = evaluate(base);
  Model trained = base, retrained = base;
  const FinetuneResult ft = finetune(trained, train, o, o.model, "train");
  const FinetuneResult rt = finetune(retrained, retain, o, o.model, "retrain");
  const EvaluationB e_trained = evaluate(trained), e_retrained = evaluate(retrained);
  std::fprintf(stderr, "extractable rate (tuning / reported passage): pretrained %.3f / %.3f, trained %.3f / %.3f, retrained %.3f / %.3f\n",
               before.tuning_rate, before.reported_rate, e_trained.tuning_rate, e_trained.reported_rate, e_retrained.tuning_rate,
               e_retrained.reported_rate);
  SearchTarget target;
  target.score = e_retrained.tuning_rate;
  target.probe_limit = o.utility_guard * perplexity(trained, probe, threads);
  auto check = [&](const Model& m) {
    SearchPoint p;
    p.score = rate(extractable(m, passages[0], threads));
    p.probe_perplexity = perplexity(m, probe, threads);
    return p;
  };
  std::vector<MethodRun> runs;
  std::vector<EvaluationB> evals;
  json export_check;
  const std::string run = o.run_name.empty() ? "case_b" : o.run_name;
  const auto dir = std::filesystem::path(o.results_dir) / run;
  std::filesystem::create_directories(dir);
  for (const auto& name : o.methods) {
    if (name == "none") continue;
    runs.push_back(run_named_method(name, trained, forget, retain, o, target, check));
    Model m = trained;
    if (!runs.back().parameters.empty()) std::copy(runs.back().parameters.begin(), runs.back().parameters.end(), m.parameters().begin());
    evals.push_back(evaluate(m));
    if (o.export_gguf && name == o.methods.front() && !runs.back().parameters.empty()) {
      fu::GgufUnlearningRecord rec;
      rec.method = "case_studies/" + name;
      rec.forgotten_records = static_cast<std::uint64_t>(2 * o.passage_repeats);
      rec.note = "case B: two verbatim passages";
      fu::models::export_llama(m, file, dir / "unlearned.gguf", rec);
      // What scripts/check_in_llamacpp.py compares llama.cpp's values with: ln p of each passage (its text
      // tokenised as one string, every token after the first scored) under the model just written.
      json recs = json::array();
      for (std::size_t i = 0; i < texts.size(); ++i) {
        const auto t = tok.encode(texts[i]);
        if (t.size() > lo.context_length) continue;  // decoding + encoding need not give back the same tokens
        const auto lp = m.position_log_probs(std::span<const Token>(t));
        double sum = 0;
        for (std::size_t k = 1; k < t.size(); ++k) sum += static_cast<double>(lp(static_cast<Eigen::Index>(t[k]), static_cast<Eigen::Index>(k - 1)));
        recs.push_back({{"role", i == 0 ? "tuning" : "reported"}, {"text", texts[i]}, {"tokens", t.size()}, {"log_prob", sum}});
      }
      export_check = {{"method", name}, {"gguf", (dir / "unlearned.gguf").string()}, {"records", recs}};
    }
  }

  // ---- report ------------------------------------------------------------------------------------
  auto ej = [](const EvaluationB& e) {
    return json{{"extractable_rate_tuning", e.tuning_rate}, {"extractable_rate_reported", e.reported_rate},
                {"passage_nll_tuning", e.tuning_nll}, {"passage_nll_reported", e.reported_nll},
                {"heldout_changelog_perplexity", e.heldout_changelog_ppl}, {"heldout_fortunes_perplexity", e.heldout_fortunes_ppl},
                {"seconds", e.seconds}};
  };
  std::ostringstream md;
  md << "# Case B: verbatim passages (r = " << o.passage_repeats << ", " << L << " tokens each)\n\n"
     << "| model | reached | extractable rate, tuning passage | reported passage | reported passage NLL (nats/token) | held-out ppl changelogs | ppl / retrained | held-out ppl fortunes | ppl / retrained | time (s) | time / retraining | knob |\n"
     << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  auto row = [&](const std::string& name, const EvaluationB& e, double secs, const std::string& reached, const std::string& knob) {
    md << "| " << name << " | " << reached << " | " << fmt(e.tuning_rate, 3) << " | " << fmt(e.reported_rate, 3) << " | " << fmt(e.reported_nll, 3)
       << " | " << fmt(e.heldout_changelog_ppl, 3) << " | " << fmt(e.heldout_changelog_ppl / e_retrained.heldout_changelog_ppl, 3) << " | "
       << fmt(e.heldout_fortunes_ppl, 3) << " | " << fmt(e.heldout_fortunes_ppl / e_retrained.heldout_fortunes_ppl, 3) << " | "
       << fmt(secs, 1) << " | " << (std::isnan(secs) ? std::string("n/a") : fmt(secs / rt.seconds, 3)) << " | " << knob << " |\n";
  };
  row("pretrained (not fine-tuned)", before, std::nan(""), "", "");
  row("trained (no unlearning)", e_trained, std::nan(""), "", "");
  json methods = json::array();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    row(r.name, evals[i], r.seconds, r.reached ? "yes" : "**no**", r.selected ? "steps = " + std::to_string(r.points[*r.selected].steps) : "n/a");
    json pts = json::array();
    for (const auto& p : r.points)
      pts.push_back({{"steps", p.steps}, {"tuning_rate", p.score}, {"probe_perplexity", p.probe_perplexity}, {"reached", p.reached},
                     {"failed", p.failed}, {"seconds", p.seconds}});
    methods.push_back({{"method", r.name}, {"family", r.family}, {"description", r.description}, {"reached", r.reached},
                       {"selected_steps", r.selected ? json(r.points[*r.selected].steps) : json(nullptr)}, {"search", pts},
                       {"prepare_seconds", r.prepare_seconds}, {"seconds", r.seconds}, {"notes", r.notes}, {"evaluation", ej(evals[i])}});
  }
  row("retrained (gold standard)", e_retrained, rt.seconds, "", "");
  json j;
  j["schema"] = "case_studies results v1";
  j["study"] = "b";
  j["config"] = {{"seed", o.seed}, {"passage_repeats", o.passage_repeats}, {"passage_tokens", L}, {"filler_entries", o.filler_entries},
                 {"epochs", o.epochs}, {"learning_rate", o.learning_rate}, {"max_steps", o.max_steps}, {"trust_kl", o.trust_kl}, {"trust_metric", o.trust_metric},
                 {"fisher_samples", o.fisher_samples}, {"threads", o.threads}};
  j["passages"] = {{"tuning", texts[0]}, {"reported", texts[1]}, {"candidates_tried", tried}};
  j["training"] = {{"seconds", ft.seconds}, {"epoch_loss", ft.epoch_loss}, {"from_cache", ft.from_cache}};
  j["retraining"] = {{"seconds", rt.seconds}, {"epoch_loss", rt.epoch_loss}, {"from_cache", rt.from_cache}};
  j["pretrained"] = ej(before);
  j["trained"] = ej(e_trained);
  j["retrained"] = ej(e_retrained);
  j["target"] = {{"tuning_rate", target.score}, {"probe_perplexity_limit", target.probe_limit}, {"selection_used", "tuning passage only"}};
  j["methods"] = methods;
  if (!export_check.is_null()) j["export"] = export_check;
  j["seconds_total"] = now_seconds() - t_start;
  unlearn_lm::write_text(dir / "results.json", j.dump(2, ' ', false, json::error_handler_t::replace));
  unlearn_lm::write_text(dir / "results.md", md.str());
  std::cout << md.str() << "\nwrote " << (dir / "results.json").string() << " and results.md\n";
  return 0;
}

}  // namespace case_studies
