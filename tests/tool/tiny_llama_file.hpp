// A tiny Llama GGUF written with the project's GgufWriter, for end-to-end tests of tools that read GGUF
// files: llama metadata, a byte-level BPE tokenizer (GPT-2's 256 byte symbols, one merge "a b", and
// <|endoftext|> as BOS/EOS, add_bos = false) and every tensor as F32 from a Llama<float>, optionally
// after Adam on some texts so that the model has memorised them.
#pragma once

#include "fisher_unlearn/bpe_tokenizer.hpp"
#include "fisher_unlearn/io/gguf_writer.hpp"
#include "fisher_unlearn/models/llama.hpp"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

namespace tiny_llama_file {

namespace fu = fisher_unlearn;

inline fu::models::LlamaConfig config() {
  fu::models::LlamaConfig c;
  c.vocab_size = 258;
  c.context_length = 64;
  c.num_layers = 2;
  c.width = 32;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.ffn_width = 64;
  c.rope_base = 10000.0;
  c.rms_epsilon = 1e-5;
  return c;
}

/// The GPT-2 byte symbols, then "ab" (the merge "a b"), then <|endoftext|>.
inline std::vector<std::string> vocabulary() {
  std::vector<std::string> tokens;
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::string s;
    fu::detail::append_utf8(s, fu::detail::byte_to_codepoint()[b]);
    tokens.push_back(s);
  }
  tokens.push_back("ab");
  tokens.push_back("<|endoftext|>");
  return tokens;
}

/// Writes the model with the tokenizer above (the model's vocab_size must be 258).
inline void write(const fu::models::Llama<float>& model, const std::filesystem::path& path) {
  const auto& c = model.config();
  fu::GgufWriter w;
  auto u32 = [](std::size_t v) { return fu::GgufValue{static_cast<std::uint32_t>(v)}; };
  auto f32 = [](double v) { return fu::GgufValue{static_cast<float>(v)}; };
  w.set("general.architecture", fu::GgufValue{std::string("llama")});
  w.set("general.name", fu::GgufValue{std::string("fisher_unlearn tiny test llama")});
  w.set("llama.block_count", u32(c.num_layers));
  w.set("llama.context_length", u32(c.context_length));
  w.set("llama.embedding_length", u32(c.width));
  w.set("llama.feed_forward_length", u32(c.ffn_width));
  w.set("llama.attention.head_count", u32(c.num_heads));
  w.set("llama.attention.head_count_kv", u32(c.num_kv_heads));
  w.set("llama.rope.freq_base", f32(c.rope_base));
  w.set("llama.rope.dimension_count", u32(c.rotated_dims()));
  w.set("llama.attention.layer_norm_rms_epsilon", f32(c.rms_epsilon));
  w.set("tokenizer.ggml.model", fu::GgufValue{std::string("gpt2")});
  w.set("tokenizer.ggml.pre", fu::GgufValue{std::string("gpt2")});
  const auto vocab = vocabulary();
  w.set("tokenizer.ggml.tokens", fu::GgufValue{fu::GgufArray{vocab}});
  std::vector<std::int32_t> types(vocab.size(), fu::BpeTokenizer::Normal);
  types.back() = fu::BpeTokenizer::Control;
  w.set("tokenizer.ggml.token_type", fu::GgufValue{fu::GgufArray{types}});
  w.set("tokenizer.ggml.merges", fu::GgufValue{fu::GgufArray{std::vector<std::string>{"a b"}}});
  w.set("tokenizer.ggml.bos_token_id", u32(vocab.size() - 1));
  w.set("tokenizer.ggml.eos_token_id", u32(vocab.size() - 1));
  w.set("tokenizer.ggml.add_bos_token", fu::GgufValue{false});
  for (const auto& t : model.tensors()) {
    const auto values = model.tensor(t.name);
    std::vector<std::uint64_t> shape{t.rows};
    if (t.cols != 1) shape.push_back(t.cols);
    w.add_tensor(t.name + ".weight", shape, std::vector<float>(values.begin(), values.end()), fu::GgmlType::F32);
  }
  w.write(path);
}

/// A random model (seed) trained by full-batch Adam on `texts` (tokenised with `tok`) for `steps` steps.
inline fu::models::Llama<float> memorised(const fu::BpeTokenizer& tok, const std::vector<std::string>& texts,
                                          int steps, std::uint64_t seed) {
  fu::models::Llama<float> model(config(), {"all"}, seed);
  std::vector<fu::models::Llama<float>::Sample> batch;
  for (const auto& t : texts) batch.push_back({tok.encode(t), {}});
  const std::size_t d = model.num_parameters();
  std::vector<float> g(d);
  std::vector<double> m(d, 0.0), v(d, 0.0);
  const double lr = 3e-3, b1 = 0.9, b2 = 0.999;
  for (int step = 1; step <= steps; ++step) {
    model.sum_loss_and_gradient(batch, g);
    auto p = model.parameters();
    const double c1 = 1.0 - std::pow(b1, step), c2 = 1.0 - std::pow(b2, step);
    for (std::size_t i = 0; i < d; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * static_cast<double>(g[i]) * g[i];
      p[i] -= static_cast<float>(lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + 1e-8));
    }
  }
  return model;
}

/// The tokenizer of the file `write` makes (built from the same metadata, without a file).
inline fu::BpeTokenizer tokenizer(const std::filesystem::path& written) {
  return fu::BpeTokenizer::from_gguf(fu::GgufFile::open(written));
}

}  // namespace tiny_llama_file
