// The paper's real-world memorisation cases on SmolLM2-135M (docs/case_studies.md):
//   case A (--study a): real names and e-mail addresses from Debian changelog trailers; fine-tune the top
//     block(s) on changelog entries, delete everything of chosen people with each method at matched
//     privacy, retraining without them as the gold standard;
//   case B (--study b): a verbatim passage repeated r times; extractable memorisation before/after.
// Phases: corpus.hpp (data), finetune.hpp (training, retraining), measure.hpp (ranks, extraction, MIA,
// perplexity, rank-sum test), methods.hpp (unlearning + knob search), report.hpp (JSON, Markdown).
#include "report.hpp"
#include "case_b.hpp"

#include "fisher_unlearn/models/llama_gguf.hpp"

#include <iostream>

using namespace case_studies;

namespace {

std::string load_line() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

/// The practitioner's form of case A (examples/unlearn_gguf): the fine-tuned model as GGUF, one record per
/// deleted person (" -- Name <" TAB "email>", the trailer without its leading newline: a record is one
/// line), every candidate address, the retain entries (the fine-tuning data that stays) and the held-out
/// entries, in <results>/<run>/tool_inputs/.
void write_tool_inputs(const Model& trained, const fu::GgufFile& file, const CaseA& c, const ScoringA& sc, const Options& o) {
  const auto dir = std::filesystem::path(o.results_dir) / (o.run_name.empty() ? "case_a" : o.run_name) / "tool_inputs";
  std::filesystem::create_directories(dir);
  fu::GgufUnlearningRecord rec;
  rec.method = "none (case_studies: the fine-tuned model before unlearning)";
  rec.forgotten_records = 0;
  rec.note = "case A seed " + std::to_string(o.seed) + ": fine-tuned on every entry, deleted people included";
  fu::models::export_llama(trained, file, dir / "trained.gguf", rec);
  std::ostringstream forget, candidates, retain, heldout;
  for (const auto& p : c.people)
    if (p.deleted()) forget << " -- " << p.name << " <\t" << p.email << ">\n";  // tuning people first, as in results.json
  for (const auto& a : sc.all.addresses) candidates << a << ">\n";
  for (std::size_t e = 0; e < c.entries.size(); ++e) {
    const Role r = c.people[c.owner[e]].role;
    if (r == Role::heldout) heldout << c.entries[e].text << "\n";
    else if (r == Role::kept || r == Role::one_off) retain << c.entries[e].text << "\n";
  }
  unlearn_lm::write_text(dir / "forget.txt", forget.str());
  unlearn_lm::write_text(dir / "candidates.txt", candidates.str());
  unlearn_lm::write_text(dir / "retain.txt", retain.str());
  unlearn_lm::write_text(dir / "heldout.txt", heldout.str());
  std::fprintf(stderr, "wrote %s (trained.gguf, forget.txt, candidates.txt, retain.txt, heldout.txt)\n",
               dir.string().c_str());
}

int run_case_a(const Options& o) {
  const double t_start = now_seconds();
  const std::size_t threads = static_cast<std::size_t>(o.threads);
  auto file = fu::GgufFile::open(o.model);
  fu::models::LlamaLoadOptions lo;
  lo.context_length = static_cast<std::size_t>(o.context);
  lo.execution.num_threads = threads;
  const auto cfg = fu::models::llama_config_from_gguf(file, lo.context_length);
  const auto trainable = fu::models::llama_top_blocks(cfg, static_cast<std::size_t>(o.top_blocks));
  Model base = fu::models::load_llama<float>(file, trainable, lo);
  const auto tok = fu::BpeTokenizer::from_gguf(file);
  const CaseA c = build_case_a(o, tok);
  std::fprintf(stderr, "corpus: %zu training entries (%zu tokens), %zu deleted (%zu people), retain %zu (%zu tokens), %zu held-out entries; "
                       "d = %zu trainable parameters (%s)\n",
               c.train.size(), c.train_tokens, c.forget.size(), static_cast<std::size_t>(o.tuning_people + o.reported_people),
               c.retain.size(), c.retain_tokens, c.heldout.size(), base.num_parameters(), trainable.front().c_str());
  const ScoringA sc = make_scoring(c, tok);

  const EvaluationA before = evaluate_a(base, c, sc, tok, threads);
  std::fprintf(stderr, "pretrained (before fine-tuning): held-out ppl %.3f, evaluation %.0f s\n", before.heldout_perplexity, before.seconds);

  Model trained = base;  // copies share the frozen weights and their boundary cache
  const FinetuneResult ft = finetune(trained, c.train, o, o.model, "train");
  Model retrained = base;
  const FinetuneResult rt = finetune(retrained, c.retain, o, o.model, "retrain");
  const EvaluationA e_trained = evaluate_a(trained, c, sc, tok, threads);
  const EvaluationA e_retrained = evaluate_a(retrained, c, sc, tok, threads);
  const double trained_probe = perplexity(trained, sc.probe, threads);
  const double retrained_tuning = tuning_score(rank_addresses(retrained, sc.tuning, threads));
  SearchTarget target;
  target.score = retrained_tuning + o.target_margin;
  target.probe_limit = o.utility_guard * trained_probe;
  std::fprintf(stderr, "trained: held-out ppl %.3f, tuning exposure %.2f bits; retrained: ppl %.3f, tuning exposure %.2f bits -> target %.2f\n",
               e_trained.heldout_perplexity, tuning_score(rank_addresses(trained, sc.tuning, threads)), e_retrained.heldout_perplexity,
               retrained_tuning, target.score);

  if (o.tool_inputs) write_tool_inputs(trained, file, c, sc, o);

  auto check = [&](const Model& m) {
    SearchPoint p;
    p.score = tuning_score(rank_addresses(m, sc.tuning, threads));
    p.probe_perplexity = perplexity(m, sc.probe, threads);
    return p;
  };
  std::vector<MethodRun> runs;
  std::vector<EvaluationA> evals;
  for (const auto& name : o.methods) {
    if (name == "none") continue;
    runs.push_back(run_named_method(name, trained, c.forget, c.retain, o, target, check));
    Model m = trained;
    if (!runs.back().parameters.empty()) std::copy(runs.back().parameters.begin(), runs.back().parameters.end(), m.parameters().begin());
    evals.push_back(evaluate_a(m, c, sc, tok, threads));
  }
  // The exported model: the first method (in --methods order) that reached the target on the tuning
  // people, else the first method; its in-memory log-probabilities are methods[exported].evaluation.
  std::optional<std::size_t> exported;
  for (std::size_t i = 0; i < runs.size() && !exported; ++i)
    if (runs[i].reached && !runs[i].parameters.empty()) exported = i;
  if (!exported && !runs.empty() && !runs.front().parameters.empty()) exported = 0;
  std::string exported_path;
  if (o.export_gguf && exported) {
    Model m = trained;
    std::copy(runs[*exported].parameters.begin(), runs[*exported].parameters.end(), m.parameters().begin());
    fu::GgufUnlearningRecord rec;
    rec.method = "case_studies/" + runs[*exported].name;
    rec.forgotten_records = c.forget.size();
    rec.note = "case A: every changelog entry of " + std::to_string(o.tuning_people + o.reported_people) + " people (forget scope " +
               o.forget_scope + ")";
    const auto out = std::filesystem::path(o.results_dir) / (o.run_name.empty() ? "case_a" : o.run_name) / "unlearned.gguf";
    std::filesystem::create_directories(out.parent_path());
    fu::models::export_llama(m, file, out, rec);
    exported_path = out.string();
    std::fprintf(stderr, "wrote %s (%s)\n", out.string().c_str(), runs[*exported].name.c_str());
  }

  // ---- report ------------------------------------------------------------------------------------
  std::vector<RowA> rows;
  rows.push_back({"pretrained (not fine-tuned)", "reference", &before, std::nan(""), "", ""});
  rows.push_back({"trained (no unlearning)", "reference", &e_trained, std::nan(""), "", ""});
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    rows.push_back({r.name, r.family, &evals[i], r.seconds, r.reached ? "yes" : "**no**",
                    r.selected ? "steps = " + std::to_string(r.points[*r.selected].steps) : "n/a"});
  }
  rows.push_back({"retrained (gold standard)", "reference", &e_retrained, rt.seconds, "", ""});
  const std::string run = o.run_name.empty() ? "case_a" : o.run_name;
  const auto dir = std::filesystem::path(o.results_dir) / run;
  std::ostringstream md;
  md << "# Case A: personal data (Debian changelog trailers)\n\nLoad at the end: " << load_line() << "; total "
     << fmt(now_seconds() - t_start, 0) << " s.\n\n" << markdown_a(c, rows, e_retrained, rt.seconds);
  json j;
  j["schema"] = "case_studies results v1";
  j["study"] = "a";
  j["config"] = {{"model", o.model}, {"seed", o.seed}, {"top_blocks", o.top_blocks}, {"context", o.context}, {"epochs", o.epochs},
                 {"batch", o.batch}, {"learning_rate", o.learning_rate}, {"max_steps", o.max_steps}, {"trust_kl", o.trust_kl},
                 {"fisher_samples", o.fisher_samples}, {"fisher_damping", o.fisher_damping}, {"retain_anchor", o.retain_anchor},
                 {"retain_batch", o.retain_batch}, {"target_margin", o.target_margin}, {"utility_guard", o.utility_guard},
                 {"threads", o.threads}, {"trust_metric", o.trust_metric}, {"forget_scope", o.forget_scope}};
  json people = json::array();
  for (const auto& p : c.people) people.push_back({{"name", p.name}, {"email", p.email}, {"role", role_name(p.role)}, {"entries", p.entries.size()}});
  j["corpus"] = {{"train_entries", c.train.size()}, {"train_tokens", c.train_tokens}, {"retain_entries", c.retain.size()},
                 {"retain_tokens", c.retain_tokens}, {"forget_entries", c.forget.size()}, {"heldout_entries", c.heldout.size()},
                 {"candidates", sc.all.addresses.size()}, {"people", people}};
  j["training"] = {{"seconds", ft.seconds}, {"epoch_loss", ft.epoch_loss}, {"from_cache", ft.from_cache}};
  j["retraining"] = {{"seconds", rt.seconds}, {"epoch_loss", rt.epoch_loss}, {"from_cache", rt.from_cache}};
  j["target"] = {{"tuning_score_bits", target.score}, {"retrained_tuning_score_bits", retrained_tuning}, {"probe_perplexity_limit", target.probe_limit},
                 {"selection_used", "tuning people only"}};
  j["pretrained"] = evaluation_json(c, before);
  j["trained"] = evaluation_json(c, e_trained);
  j["retrained"] = evaluation_json(c, e_retrained);
  const auto rr = reported_ranks(c, e_retrained);
  json methods = json::array();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    json pts = json::array();
    for (const auto& p : r.points)
      pts.push_back({{"steps", p.steps}, {"tuning_score_bits", p.score}, {"probe_perplexity", p.probe_perplexity}, {"reached", p.reached},
                     {"failed", p.failed}, {"seconds", p.seconds}});
    methods.push_back({{"method", r.name}, {"family", r.family}, {"description", r.description}, {"reached", r.reached},
                       {"selected_steps", r.selected ? json(r.points[*r.selected].steps) : json(nullptr)}, {"search", pts},
                       {"prepare_seconds", r.prepare_seconds}, {"seconds", r.seconds}, {"time_ratio_to_retrain", r.seconds / rt.seconds},
                       {"heldout_perplexity_ratio_to_retrain", evals[i].heldout_perplexity / e_retrained.heldout_perplexity},
                       {"rank_sum_p_vs_retrained", rank_sum_p_value(reported_ranks(c, evals[i]), rr)}, {"notes", r.notes},
                       {"evaluation", evaluation_json(c, evals[i])}});
  }
  j["methods"] = methods;
  if (!exported_path.empty())
    j["exported"] = {{"method_index", *exported}, {"method", runs[*exported].name}, {"gguf", exported_path},
                     {"rule", "the first method that reached the target on the tuning people, else the first method"}};
  j["seconds_total"] = now_seconds() - t_start;
  j["load_average"] = load_line();
  std::filesystem::create_directories(dir);
  unlearn_lm::write_text(dir / "results.json", j.dump(2, ' ', false, json::error_handler_t::replace));
  unlearn_lm::write_text(dir / "results.md", md.str());
  std::cout << md.str() << "\nwrote " << (dir / "results.json").string() << " and results.md\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"case_studies: the paper's real-world memorisation cases on SmolLM2 (docs/case_studies.md)"};
  Options o;
  add_options(app, o);
  try {
    app.parse(argc, argv);
    apply_study_defaults(app, o);
    validate(o);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fu::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  try {
    return o.study == "a" ? run_case_a(o) : run_case_b(o);
  } catch (const fu::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
