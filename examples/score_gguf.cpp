// Log-probabilities of records under a GGUF model as fisher_unlearn computes them, as JSON on stdout:
// the "ours" side of scripts/check_in_llamacpp.py (which puts llama.cpp's beside them).
//   ./score_gguf MODEL.gguf RECORDS.txt [--threads N]
// RECORDS.txt: one record a line, 'prefix<TAB>secret' ("\n", "\t", "\\" escaped, as unlearn_gguf's --forget
// file); a line without a TAB is all secret (empty prefix). A record is tokenised as one string, prefix +
// secret, as the case studies score an address after " -- Name <"; its scored tokens are those after the
// prefix's own tokens (their common start; at least the first token is context), so
//   log_prob = Σ ln p(tokens[t+1] | tokens[0..t]) over the scored tokens t+1,
// computed in float by the dequantised model (every weight of the file as fisher_unlearn reads it).
#include <fisher_unlearn/bpe_tokenizer.hpp>
#include <fisher_unlearn/errors.hpp>
#include <fisher_unlearn/models/llama_gguf.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace fu = fisher_unlearn;

namespace {

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'n' || s[i + 1] == 't' || s[i + 1] == '\\')) {
      out.push_back(s[i + 1] == 'n' ? '\n' : s[i + 1] == 't' ? '\t' : '\\');
      ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct Record {
  std::size_t line = 0;
  std::vector<fu::Token> tokens;
  std::size_t first_scored = 1;  ///< index of the first token whose log-probability is summed
};

std::vector<Record> read_records(const std::string& path, const fu::BpeTokenizer& tok) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw fu::InvalidArgument("cannot open the records file '" + path + "'; give a readable file, one 'prefix<TAB>secret' a line");
  std::vector<Record> out;
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::size_t tab = line.find('\t');
    const std::string prefix = tab == std::string::npos ? "" : unescape(line.substr(0, tab));
    const std::string secret = unescape(tab == std::string::npos ? line : line.substr(tab + 1));
    Record r;
    r.line = n;
    r.tokens = tok.encode(prefix + secret);
    const auto p = tok.encode(prefix);
    std::size_t k = 0;
    while (k < p.size() && k < r.tokens.size() && p[k] == r.tokens[k]) ++k;
    r.first_scored = std::max<std::size_t>(k, 1);
    if (r.tokens.size() <= r.first_scored)
      throw fu::InvalidArgument("records file '" + path + "', line " + std::to_string(n) +
                                ": nothing to score after the prefix (the secret after the TAB is empty or merges into the prefix's tokens)");
    out.push_back(std::move(r));
  }
  if (out.empty()) throw fu::InvalidArgument("the records file '" + path + "' has no records; write one 'prefix<TAB>secret' a line");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && !(argc == 5 && std::string(argv[3]) == "--threads")) {
    std::cerr << "usage: score_gguf MODEL.gguf RECORDS.txt [--threads N]\n";
    return 2;
  }
  try {
    std::size_t threads = 1;
    if (argc == 5) {
      const long long t = std::stoll(argv[4]);
      if (t < 1 || t > 1024) throw fu::InvalidArgument("--threads must be between 1 and 1024");
      threads = static_cast<std::size_t>(t);
    }
    if (!std::ifstream(argv[2]))  // before the model is opened: the cheap mistake first
      throw fu::InvalidArgument(std::string("cannot open the records file '") + argv[2] + "'; give a readable file, one 'prefix<TAB>secret' a line");
    const auto file = fu::GgufFile::open(argv[1]);
    const auto tok = fu::BpeTokenizer::from_gguf(file);
    const auto records = read_records(argv[2], tok);
    std::size_t longest = 2;
    for (const auto& r : records) longest = std::max(longest, r.tokens.size());
    fu::models::LlamaLoadOptions lo;
    lo.context_length = longest;
    lo.execution.num_threads = threads;
    // Llama needs one trainable group; output_norm (576 numbers) changes nothing in the forward pass.
    const auto model = fu::models::load_llama<float>(file, {"output_norm"}, lo);
    std::ostringstream js;
    js.precision(17);
    js << "{\"schema\": \"score_gguf v1\", \"records\": [";
    for (std::size_t i = 0; i < records.size(); ++i) {
      const auto& r = records[i];
      const auto lp = model.position_log_probs(std::span<const fu::Token>(r.tokens));
      double sum = 0;
      js << (i ? ",\n  " : "\n  ") << "{\"line\": " << r.line << ", \"first_scored\": " << r.first_scored << ", \"tokens\": [";
      for (std::size_t t = 0; t < r.tokens.size(); ++t) js << (t ? ", " : "") << r.tokens[t];
      js << "], \"log_probs\": [";
      for (std::size_t t = r.first_scored; t < r.tokens.size(); ++t) {
        const double v = lp(static_cast<Eigen::Index>(r.tokens[t]), static_cast<Eigen::Index>(t - 1));
        sum += v;
        js << (t > r.first_scored ? ", " : "") << v;
      }
      js << "], \"log_prob\": " << sum << "}";
    }
    js << "\n]}\n";
    std::cout << js.str();
    return 0;
  } catch (const fu::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
