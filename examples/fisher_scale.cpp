// The Fisher scale of a sequence loss, measured: trains (or loads) the demo transformer on a text file,
// then for a few random directions v compares the finite-difference curvature vᵀHv of the mean loss over
// m windows with vᵀFv of the Monte-Carlo and empirical Fishers built by collect_gradients, with and
// without the 1/√loss_scale scaling (docs/unlearners.md, "The Fisher scale for sequence losses").
//
//   ./build/examples/fisher_scale [text file = data/kjv/train.txt] [--bytes 120000] [--steps 700]
//                                 [--windows 256] [--directions 4] [--draws 4] [--checkpoint path]
// (the demo driver's model and training settings: the first 120 kB of the corpus, 700 AdamW steps)
// With --checkpoint, a model is loaded from path when it exists, otherwise trained and saved there.
#include "example_checks.hpp"
#include "fisher_unlearn/checkpoint.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/models/transformer.hpp"
#include "fisher_unlearn/models/transformer_training.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;
using Model = fu::models::Transformer<double>;
using Sample = fu::SequenceSample;

namespace {

struct Arguments {
  std::string text = "data/kjv/train.txt";
  std::string checkpoint;
  std::size_t bytes = 120000, steps = 700, windows = 256, directions = 4, draws = 4;
};

// Every value is checked here, before any file is read or any model trained.
Arguments parse(int argc, char** argv) {
  using example_checks::parse_integer;
  Arguments a;
  bool have_text = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      example_checks::require(i + 1 < argc, arg + " needs a value");
      return argv[++i];
    };
    auto count = [&](long long lo, long long hi) { return static_cast<std::size_t>(parse_integer(value(), lo, hi, arg)); };
    if (arg == "--steps") a.steps = count(1, 1000000);
    else if (arg == "--bytes") a.bytes = count(0, 1LL << 40);  // 0: the whole file
    else if (arg == "--windows") a.windows = count(1, 1 << 20);
    else if (arg == "--directions") a.directions = count(1, 10000);
    else if (arg == "--draws") a.draws = count(1, 10000);
    else if (arg == "--checkpoint") a.checkpoint = value();
    else if (!arg.empty() && arg[0] == '-')
      throw fu::InvalidArgument("unknown option " + arg + "; the options are --bytes --steps --windows --directions "
                                "--draws --checkpoint and a text file");
    else {
      example_checks::require(!have_text, "one text file only; got '" + a.text + "' and '" + arg + "'");
      a.text = arg;
      have_text = true;
    }
  }
  // A checkpoint that will be written after training: its folder must be writable now.
  if (!a.checkpoint.empty() && !std::filesystem::exists(a.checkpoint))
    example_checks::require_writable_file_location(a.checkpoint, "--checkpoint");
  return a;
}

// (1/N) Σᵢ (gᵢ·v)² over the collected gradients, in chunks so that d × N never sits in memory at once.
double fisher_quadratic_form(const Model& model, std::span<const Sample> windows, const fu::GradientCollection& base,
                             const Eigen::VectorXd& v) {
  double sum = 0;
  std::size_t count = 0;
  const std::size_t chunk = 32;
  for (std::size_t begin = 0; begin < windows.size(); begin += chunk) {
    fu::GradientCollection o = base;
    o.seed = base.seed + begin;  // independent draws per chunk
    const auto part = windows.subspan(begin, std::min(chunk, windows.size() - begin));
    const Eigen::MatrixXd G = fu::collect_gradients(model, part, o);
    sum += (G.transpose() * v).squaredNorm();
    count += static_cast<std::size_t>(G.cols());
  }
  return sum / static_cast<double>(count);
}

// vᵀ∇²J v with J = mean loss over the windows, by central differences of the batch gradient.
double hessian_quadratic_form(Model& model, std::span<const Sample> windows, const Eigen::VectorXd& v, double h) {
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  Eigen::Map<Eigen::VectorXd> theta(model.parameters().data(), d);
  const Eigen::VectorXd theta0 = theta;
  Eigen::VectorXd up(d), down(d);
  theta = theta0 + h * v;
  model.sum_loss_and_gradient(windows, std::span<double>(up.data(), model.num_parameters()));
  theta = theta0 - h * v;
  model.sum_loss_and_gradient(windows, std::span<double>(down.data(), model.num_parameters()));
  theta = theta0;
  return v.dot(up - down) / (2 * h * static_cast<double>(windows.size()));
}

}  // namespace

int main(int argc, char** argv) try {
  const Arguments args = parse(argc, argv);
  std::ifstream in(args.text, std::ios::binary);
  if (!in) {
    std::cerr << "cannot read " << args.text << " (./scripts/prepare_data.sh kjv prepares data/kjv/train.txt)\n";
    return 2;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (args.bytes != 0 && text.size() > args.bytes) text.resize(args.bytes);
  example_checks::require_text_corpus(text, args.text);
  example_checks::require(text.size() > 65, args.text + " is too short: the model needs windows of 65 bytes");
  const std::vector<fu::Token> stream = fu::ByteTokenizer{}.encode(text);

  fu::models::TransformerConfig config;  // the demo's model: 2 layers, width 64, 4 heads, context 64
  config.seed = 1;
  fu::models::Transformer<float> trained(config);
  trained.set_execution({2, 8});
  if (!args.checkpoint.empty() && std::filesystem::exists(args.checkpoint)) {
    fu::load_checkpoint(args.checkpoint, trained);
    std::cout << "loaded " << args.checkpoint << "\n";
  } else {
    fu::TrainingOptions o;  // the demo driver's settings
    o.steps = args.steps;
    o.batch_size = 32;
    o.learning_rate = 3e-3;
    o.min_learning_rate = 3e-4;
    o.adamw.weight_decay = 0.01;
    o.progress_stream = &std::cout;
    const auto summary = fu::train_language_model(trained, stream, o);
    std::cout << "trained " << summary.steps << " steps in " << summary.seconds << " s, final loss "
              << summary.final_loss << "\n";
    if (!args.checkpoint.empty()) fu::save_checkpoint(args.checkpoint, trained);
  }

  Model model(trained);  // curvature in double
  model.set_execution({2, 8});
  std::mt19937_64 window_rng(7);
  const auto windows = fu::sample_windows<Sample>(stream, config.context_length + 1, args.windows, window_rng);
  const double T = static_cast<double>(config.context_length);
  std::cout << "d = " << model.num_parameters() << ", m = " << windows.size() << " windows of T = " << T
            << " targets, mean loss " << model.sum_loss(windows) / static_cast<double>(windows.size()) << "\n\n";

  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  const auto d = static_cast<Eigen::Index>(model.num_parameters());
  const fu::GradientCollection mc{fu::FisherKind::monte_carlo, args.draws, 1};
  fu::GradientCollection mc_old = mc;
  mc_old.apply_loss_scale = false;
  const fu::GradientCollection emp{fu::FisherKind::empirical, 1, 1};
  fu::GradientCollection emp_old = emp;
  emp_old.apply_loss_scale = false;
  std::printf("%-9s %12s %12s %12s %12s %12s %9s %9s %9s %9s\n", "direction", "vHv", "vFv MC new", "vFv MC old",
              "vFv emp new", "vFv emp old", "H/MC new", "H/MC old", "H/emp new", "H/emp old");
  for (std::size_t k = 0; k < args.directions; ++k) {
    Eigen::VectorXd v(d);
    for (auto& x : v) x = normal(rng);
    v.normalize();
    const double h = hessian_quadratic_form(model, windows, v, 1e-4);
    const double f_new = fisher_quadratic_form(model, windows, mc, v), f_old = fisher_quadratic_form(model, windows, mc_old, v);
    const double e_new = fisher_quadratic_form(model, windows, emp, v), e_old = fisher_quadratic_form(model, windows, emp_old, v);
    std::printf("%-9zu %12.4e %12.4e %12.4e %12.4e %12.4e %9.3f %9.2f %9.3f %9.2f\n", k, h, f_new, f_old, e_new, e_old,
                h / f_new, h / f_old, h / e_new, h / e_old);
  }
  std::cout << "\n(new = gradients divided by sqrt(loss_scale) = multiplied by sqrt(T); old = unscaled; "
            << "the ratio old/new of vFv is 1/T = " << 1.0 / T << ")\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "fisher_scale: " << e.what() << "\n";
  return 1;
}
