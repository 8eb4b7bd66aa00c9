// Llama models from and back to GGUF files (llama.cpp's format): the config from `llama.*` metadata, every
// tensor dequantised to fp32/fp64 (io/gguf.hpp), and export of the trainable tensors into a copy of the file
// (io/gguf_writer.hpp; every other tensor copied byte for byte). Cost: O(file size) each way; memory: the
// fp32 (or fp64) weights, ≈ 4 (8) bytes per parameter, plus the file's mapping.
#pragma once

#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/io/gguf.hpp"
#include "fisher_unlearn/io/gguf_writer.hpp"
#include "fisher_unlearn/models/llama.hpp"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

namespace fisher_unlearn::models {

struct LlamaLoadOptions {
  std::size_t context_length = 0;  ///< positions the model serves; 0 = the file's llama.context_length
  LlamaExecution execution{};
};

/// The architecture of a GGUF `llama` file. FileFormatError when the file is of another architecture or
/// uses a feature this model does not implement (RoPE scaling, mixture of experts, biases, a separate RoPE
/// frequency tensor), naming it.
inline LlamaConfig llama_config_from_gguf(const GgufFile& file, std::size_t context_length = 0) {
  const std::string arch = file.get<std::string>("general.architecture");
  if (arch != "llama")
    throw FileFormatError("GGUF '" + file.source() + "' has architecture '" + arch +
                          "'; load_llama reads only 'llama' files (SmolLM2, Llama 2/3, TinyLlama, ...)");
  auto integer = [&](const std::string& key) {
    const std::int64_t v = file.get_integer(key);
    if (v <= 0) throw FileFormatError("GGUF '" + file.source() + "': '" + key + "' must be positive");
    return static_cast<std::size_t>(v);
  };
  if (file.contains("llama.expert_count") && file.get_integer("llama.expert_count") > 0)
    throw FileFormatError("GGUF '" + file.source() + "' is a mixture-of-experts model; not supported");
  if (file.contains("llama.rope.scaling.type")) {
    const std::string s = file.get<std::string>("llama.rope.scaling.type");
    if (s != "none")
      throw FileFormatError("GGUF '" + file.source() + "' uses RoPE scaling '" + s + "'; not supported");
  }
  LlamaConfig c;
  c.num_layers = integer("llama.block_count");
  c.width = integer("llama.embedding_length");
  c.ffn_width = integer("llama.feed_forward_length");
  c.num_heads = integer("llama.attention.head_count");
  c.num_kv_heads = file.contains("llama.attention.head_count_kv") ? integer("llama.attention.head_count_kv")
                                                                  : c.num_heads;
  c.context_length = context_length != 0 ? context_length : integer("llama.context_length");
  c.rms_epsilon = file.get_real("llama.attention.layer_norm_rms_epsilon");
  c.rope_base = file.contains("llama.rope.freq_base") ? file.get_real("llama.rope.freq_base") : 10000.0;
  c.rope_dims = file.contains("llama.rope.dimension_count") ? integer("llama.rope.dimension_count") : 0;
  const GgufTensorInfo& embd = file.tensor("token_embd.weight");
  if (embd.shape.size() != 2 || embd.shape[0] != c.width)
    throw FileFormatError("GGUF '" + file.source() + "': token_embd.weight is not [embedding_length, vocab]");
  c.vocab_size = static_cast<std::size_t>(embd.shape[1]);
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  try {
    c.validate();
  } catch (const InvalidArgument& e) {
    throw FileFormatError("GGUF '" + file.source() + "': " + e.what());
  }
  // Every tensor of the file must be one this model uses, with the expected shape.
  const auto expected = llama_tensor_list(c);
  for (const GgufTensorInfo& t : file.tensors()) {
    bool known = false;
    for (const LlamaTensor& e : expected)
      if (t.name == e.name + ".weight") {
        known = true;
        const bool vector_ok = e.cols == 1 && t.shape.size() == 1 && t.shape[0] == e.rows;
        const bool matrix_ok = t.shape.size() == 2 && t.shape[0] == e.rows && t.shape[1] == e.cols;
        if (!vector_ok && !matrix_ok)
          throw FileFormatError("GGUF '" + file.source() + "': tensor '" + t.name + "' has an unexpected shape (want [" +
                                std::to_string(e.rows) + (e.cols == 1 ? "" : ", " + std::to_string(e.cols)) + "])");
      }
    if (!known)
      throw FileFormatError("GGUF '" + file.source() + "' has tensor '" + t.name +
                            "', which this Llama model does not implement (biases, rope_freqs, ...)");
  }
  for (const LlamaTensor& e : expected)
    if (file.find_tensor(e.name + ".weight") == nullptr)
      throw FileFormatError("GGUF '" + file.source() + "' lacks tensor '" + e.name + ".weight'");
  return c;
}

/// A Llama model with the weights of a GGUF file, dequantised; `trainable` as in the Llama constructor
/// (e.g. llama_top_blocks(config, 4)). The file may be closed afterwards.
template <SupportedScalar Scalar = float>
Llama<Scalar> load_llama(const GgufFile& file, const std::vector<std::string>& trainable,
                         const LlamaLoadOptions& options = {}) {
  const LlamaConfig c = llama_config_from_gguf(file, options.context_length);
  std::vector<float> buffer;
  Llama<Scalar> model(c, trainable, [&](const LlamaTensor& t, std::span<Scalar> out) {
    const GgufTensorInfo& info = file.tensor(t.name + ".weight");
    if constexpr (std::is_same_v<Scalar, float>) {
      file.dequantize(info, out);
    } else {
      buffer.resize(out.size());
      file.dequantize(info, buffer);
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<Scalar>(buffer[i]);
    }
    for (Scalar v : out)
      if (!std::isfinite(v))
        throw FileFormatError("GGUF '" + file.source() + "': tensor '" + info.name + "' holds NaN or Inf");
  });
  model.set_execution(options.execution);
  return model;
}

template <SupportedScalar Scalar = float>
Llama<Scalar> load_llama(const std::filesystem::path& path, const std::vector<std::string>& trainable,
                         const LlamaLoadOptions& options = {}) {
  return load_llama<Scalar>(GgufFile::open(path), trainable, options);
}

/// Writes `source` with the model's trainable tensors replaced (stored as `type`: F32 keeps them exactly
/// in fp32, F16/BF16/Q8_0 round them) and `record` in general.unlearning.*; every other tensor and all
/// metadata are copied as they are. Atomic (temp file + rename). The model must have been loaded from a
/// file with the same architecture (checked).
template <SupportedScalar Scalar>
void export_llama(const Llama<Scalar>& model, const GgufFile& source, const std::filesystem::path& out,
                  const GgufUnlearningRecord& record, GgmlType type = GgmlType::F32) {
  const LlamaConfig c = llama_config_from_gguf(source, model.config().context_length);
  const LlamaConfig& m = model.config();
  if (c.num_layers != m.num_layers || c.width != m.width || c.num_heads != m.num_heads ||
      c.num_kv_heads != m.num_kv_heads || c.ffn_width != m.ffn_width || c.vocab_size != m.vocab_size ||
      c.tied_embeddings != m.tied_embeddings)
    throw InvalidArgument("export_llama: the source GGUF '" + source.source() +
                          "' has another architecture than the model; pass the file the model was loaded from");
  GgufWriter writer(source);
  std::vector<float> values;
  for (const std::string& name : model.trainable_groups()) {
    const auto t = model.tensor(name);
    values.assign(t.begin(), t.end());
    writer.replace_tensor(name + ".weight", values, type);
  }
  writer.record_unlearning(record);
  writer.write(out);
}

}  // namespace fisher_unlearn::models
