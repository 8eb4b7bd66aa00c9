// ggml's tensor element types as GGUF files store them: block layouts, float32 <-> f16/bf16, and
// dequantisation to float32 (x = d*q + m per block, K-quants with 6-/8-bit sub-block scales) plus
// quantisation to F32/F16/BF16/Q8_0. Cost: one pass over the bytes, O(elements), no allocation.
//
// Bitwise parity: every dequantiser computes, in float32 and in the same order, exactly what the
// reference (PyPI `gguf`, gguf.quants) computes, so the float32 results are bit-identical. Where the
// reference evaluates d*q + m, d*q is exact in float32 (an 11-bit f16 mantissa times a <= 8-bit
// integer), so a compiler that fuses it into an FMA cannot change the result. Q6_K's (d*scale)*q has
// two roundings in both. The Q8_0 quantiser rounds like ggml's quantize_row_q8_0_ref (amax/127,
// reciprocal, roundf = half away from zero, scale stored as f16 rounded to nearest even).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "fisher_unlearn/errors.hpp"

namespace fisher_unlearn {

/// ggml's element types (the numbers are the on-disk codes). Codes not listed are unknown to this
/// library; a file that uses them still opens, but its tensors of those types cannot be dequantised.
enum class GgmlType : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
  MXFP4 = 39,
};

/// Layout of one element type: `block_size` elements are stored in `type_size` bytes.
struct GgmlTypeTraits {
  std::string_view name;
  std::uint32_t block_size;
  std::uint32_t type_size;
  bool can_dequantize;  ///< this library converts it to float32
};

inline constexpr std::uint32_t kQkK = 256;  ///< super-block size of the K-quants

/// Traits of a type code read from a file; std::nullopt for a code this library does not know.
inline std::optional<GgmlTypeTraits> ggml_type_traits(std::uint32_t code) {
  switch (code) {
    case 0: return GgmlTypeTraits{"F32", 1, 4, true};
    case 1: return GgmlTypeTraits{"F16", 1, 2, true};
    case 2: return GgmlTypeTraits{"Q4_0", 32, 18, true};
    case 3: return GgmlTypeTraits{"Q4_1", 32, 20, true};
    case 6: return GgmlTypeTraits{"Q5_0", 32, 22, true};
    case 7: return GgmlTypeTraits{"Q5_1", 32, 24, true};
    case 8: return GgmlTypeTraits{"Q8_0", 32, 34, true};
    case 9: return GgmlTypeTraits{"Q8_1", 32, 36, false};
    case 10: return GgmlTypeTraits{"Q2_K", kQkK, 84, true};
    case 11: return GgmlTypeTraits{"Q3_K", kQkK, 110, true};
    case 12: return GgmlTypeTraits{"Q4_K", kQkK, 144, true};
    case 13: return GgmlTypeTraits{"Q5_K", kQkK, 176, true};
    case 14: return GgmlTypeTraits{"Q6_K", kQkK, 210, true};
    case 15: return GgmlTypeTraits{"Q8_K", kQkK, 292, false};
    case 16: return GgmlTypeTraits{"IQ2_XXS", kQkK, 66, false};
    case 17: return GgmlTypeTraits{"IQ2_XS", kQkK, 74, false};
    case 18: return GgmlTypeTraits{"IQ3_XXS", kQkK, 98, false};
    case 19: return GgmlTypeTraits{"IQ1_S", kQkK, 50, false};
    case 20: return GgmlTypeTraits{"IQ4_NL", 32, 18, false};
    case 21: return GgmlTypeTraits{"IQ3_S", kQkK, 110, false};
    case 22: return GgmlTypeTraits{"IQ2_S", kQkK, 82, false};
    case 23: return GgmlTypeTraits{"IQ4_XS", kQkK, 136, false};
    case 24: return GgmlTypeTraits{"I8", 1, 1, false};
    case 25: return GgmlTypeTraits{"I16", 1, 2, false};
    case 26: return GgmlTypeTraits{"I32", 1, 4, false};
    case 27: return GgmlTypeTraits{"I64", 1, 8, false};
    case 28: return GgmlTypeTraits{"F64", 1, 8, false};
    case 29: return GgmlTypeTraits{"IQ1_M", kQkK, 56, false};
    case 30: return GgmlTypeTraits{"BF16", 1, 2, true};
    case 34: return GgmlTypeTraits{"TQ1_0", kQkK, 54, false};
    case 35: return GgmlTypeTraits{"TQ2_0", kQkK, 66, false};
    case 39: return GgmlTypeTraits{"MXFP4", 32, 17, false};
    default: return std::nullopt;
  }
}

inline GgmlTypeTraits ggml_type_traits(GgmlType type) {
  auto t = ggml_type_traits(static_cast<std::uint32_t>(type));
  if (!t) throw InvalidArgument("unknown ggml type code " + std::to_string(static_cast<std::uint32_t>(type)));
  return *t;
}

inline std::string ggml_type_name(GgmlType type) {
  auto t = ggml_type_traits(static_cast<std::uint32_t>(type));
  return t ? std::string(t->name) : "type#" + std::to_string(static_cast<std::uint32_t>(type));
}

/// IEEE half (binary16) bits -> float32, exact (subnormals, infinities and NaN payloads kept).
inline float fp16_to_fp32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      std::uint32_t shifts = 0;
      while (!(mantissa & 0x400u)) {
        mantissa <<= 1;
        ++shifts;
      }
      bits = sign | ((113u - shifts) << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  return std::bit_cast<float>(bits);
}

/// float32 -> IEEE half bits, rounded to nearest even (what numpy's astype(float16) and ggml do);
/// magnitudes from 65520 up become infinity, NaN stays a (quiet) NaN.
inline std::uint16_t fp32_to_fp16(float value) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal half or zero
    const std::uint32_t e = ax >> 23;
    if (e < 102) return static_cast<std::uint16_t>(sign);
    const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - e;  // units of 2^-24
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t r = (ax - 0x38000000u) >> 13;
  const std::uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<std::uint16_t>(sign | r);
}

/// bfloat16 bits -> float32 (exact).
inline float bf16_to_fp32(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

/// float32 -> bfloat16 bits, rounded to nearest even; NaN becomes a quiet NaN (as ggml does).
inline std::uint16_t fp32_to_bf16(float value) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 64u);
  return static_cast<std::uint16_t>((static_cast<std::uint64_t>(x) + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

namespace detail {

inline std::uint16_t load_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (static_cast<std::uint16_t>(p[1]) << 8));
}
inline std::uint32_t load_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline float load_f16(const std::uint8_t* p) { return fp16_to_fp32(load_u16(p)); }

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block.
inline void k_scale_min(const std::uint8_t* scales, int j, std::uint8_t& sc, std::uint8_t& mn) {
  if (j < 4) {
    sc = scales[j] & 63u;
    mn = scales[j + 4] & 63u;
  } else {
    sc = static_cast<std::uint8_t>((scales[j + 4] & 0x0fu) | ((scales[j - 4] >> 6) << 4));
    mn = static_cast<std::uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// One block each: `in` holds type_size bytes, `out` block_size floats.
inline void dequant_q4_0(const std::uint8_t* in, float* out) {
  const float d = load_f16(in);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>(static_cast<int>(in[2 + j] & 0x0fu) - 8);
    out[j + 16] = d * static_cast<float>(static_cast<int>(in[2 + j] >> 4) - 8);
  }
}
inline void dequant_q4_1(const std::uint8_t* in, float* out) {
  const float d = load_f16(in), m = load_f16(in + 2);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>(in[4 + j] & 0x0fu) + m;
    out[j + 16] = d * static_cast<float>(in[4 + j] >> 4) + m;
  }
}
inline void dequant_q5_0(const std::uint8_t* in, float* out) {
  const float d = load_f16(in);
  const std::uint32_t qh = load_u32(in + 2);
  for (int j = 0; j < 32; ++j) {
    const std::uint32_t lo = j < 16 ? (in[6 + j] & 0x0fu) : (in[6 + j - 16] >> 4);
    const std::uint32_t q = lo | (((qh >> j) & 1u) << 4);
    out[j] = d * static_cast<float>(static_cast<int>(q) - 16);
  }
}
inline void dequant_q5_1(const std::uint8_t* in, float* out) {
  const float d = load_f16(in), m = load_f16(in + 2);
  const std::uint32_t qh = load_u32(in + 4);
  for (int j = 0; j < 32; ++j) {
    const std::uint32_t lo = j < 16 ? (in[8 + j] & 0x0fu) : (in[8 + j - 16] >> 4);
    const std::uint32_t q = lo | (((qh >> j) & 1u) << 4);
    out[j] = d * static_cast<float>(q) + m;
  }
}
inline void dequant_q8_0(const std::uint8_t* in, float* out) {
  const float d = load_f16(in);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<std::int8_t>(in[2 + j])) * d;
}
inline void dequant_q2_k(const std::uint8_t* in, float* out) {
  const std::uint8_t* scales = in;
  const std::uint8_t* qs = in + 16;
  const float d = load_f16(in + 80), dmin = load_f16(in + 82);
  for (int i = 0; i < 256; ++i) {
    const int half = i / 128, g = (i % 128) / 32, l = i % 32;
    const std::uint8_t sc = scales[i / 16];
    const float dl = d * static_cast<float>(sc & 0x0fu), ml = dmin * static_cast<float>(sc >> 4);
    const float q = static_cast<float>((qs[32 * half + l] >> (2 * g)) & 3u);
    out[i] = dl * q - ml;
  }
}
inline void dequant_q3_k(const std::uint8_t* in, float* out) {
  const std::uint8_t* hmask = in;
  const std::uint8_t* qs = in + 32;
  const std::uint8_t* scales = in + 96;
  const float d = load_f16(in + 108);
  float dl[16];
  for (int s = 0; s < 16; ++s) {
    const std::uint32_t lo = s < 8 ? (scales[s] & 0x0fu) : (scales[s - 8] >> 4);
    const std::uint32_t hi = (scales[8 + s % 4] >> (2 * (s / 4))) & 3u;
    dl[s] = d * static_cast<float>(static_cast<int>(lo | (hi << 4)) - 32);
  }
  for (int i = 0; i < 256; ++i) {
    const int half = i / 128, g = (i % 128) / 32, l = i % 32;
    const int low = (qs[32 * half + l] >> (2 * g)) & 3;
    const int high = ((hmask[l] >> (i / 32)) & 1) ^ 1;
    out[i] = dl[i / 16] * static_cast<float>(low - (high << 2));
  }
}
inline void dequant_q4_k(const std::uint8_t* in, float* out) {
  const float d = load_f16(in), dmin = load_f16(in + 2);
  const std::uint8_t* scales = in + 4;
  const std::uint8_t* qs = in + 16;
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, mn;
    k_scale_min(scales, j, sc, mn);
    const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(mn);
    const std::uint8_t* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) out[32 * j + l] = dj * static_cast<float>((q[l] >> shift) & 0x0fu) - mj;
  }
}
inline void dequant_q5_k(const std::uint8_t* in, float* out) {
  const float d = load_f16(in), dmin = load_f16(in + 2);
  const std::uint8_t* scales = in + 4;
  const std::uint8_t* qh = in + 16;
  const std::uint8_t* qs = in + 48;
  for (int j = 0; j < 8; ++j) {
    std::uint8_t sc, mn;
    k_scale_min(scales, j, sc, mn);
    const float dj = d * static_cast<float>(sc), mj = dmin * static_cast<float>(mn);
    const std::uint8_t* q = qs + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) {
      const std::uint32_t v = ((q[l] >> shift) & 0x0fu) | (((qh[l] >> j) & 1u) << 4);
      out[32 * j + l] = dj * static_cast<float>(v) - mj;
    }
  }
}
inline void dequant_q6_k(const std::uint8_t* in, float* out) {
  const std::uint8_t* ql = in;
  const std::uint8_t* qh = in + 128;
  const std::uint8_t* scales = in + 192;
  const float d = load_f16(in + 208);
  for (int i = 0; i < 256; ++i) {
    const int half = i / 128, g = (i % 128) / 32, l = i % 32;
    const std::uint32_t lo = (ql[64 * half + (g % 2) * 32 + l] >> (4 * (g / 2))) & 0x0fu;
    const std::uint32_t hi = (qh[32 * half + l] >> (2 * g)) & 3u;
    const float dl = d * static_cast<float>(static_cast<std::int8_t>(scales[i / 16]));
    out[i] = dl * static_cast<float>(static_cast<int>(lo | (hi << 4)) - 32);
  }
}

}  // namespace detail

/// Converts `bytes` (a whole number of blocks of `type`) into `out` (block_size floats per block).
/// Throws InvalidArgument on a size mismatch or a type this library cannot dequantise.
inline void dequantize(GgmlType type, std::span<const std::uint8_t> bytes, std::span<float> out) {
  const GgmlTypeTraits t = ggml_type_traits(type);
  if (!t.can_dequantize)
    throw InvalidArgument("dequantize: type " + std::string(t.name) +
                          " is not supported (supported: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K..Q6_K)");
  if (bytes.size() % t.type_size != 0 || bytes.size() / t.type_size * t.block_size != out.size())
    throw InvalidArgument("dequantize: " + std::to_string(bytes.size()) + " bytes of " + std::string(t.name) +
                          " do not make " + std::to_string(out.size()) + " floats");
  const std::size_t blocks = bytes.size() / t.type_size;
  const std::uint8_t* in = bytes.data();
  float* o = out.data();
  auto each = [&](auto&& block) {
    for (std::size_t b = 0; b < blocks; ++b) block(in + b * t.type_size, o + b * t.block_size);
  };
  switch (type) {
    case GgmlType::F32: if (!bytes.empty()) std::memcpy(o, in, bytes.size()); break;
    case GgmlType::F16: each([](const std::uint8_t* p, float* y) { *y = detail::load_f16(p); }); break;
    case GgmlType::BF16: each([](const std::uint8_t* p, float* y) { *y = bf16_to_fp32(detail::load_u16(p)); }); break;
    case GgmlType::Q4_0: each(detail::dequant_q4_0); break;
    case GgmlType::Q4_1: each(detail::dequant_q4_1); break;
    case GgmlType::Q5_0: each(detail::dequant_q5_0); break;
    case GgmlType::Q5_1: each(detail::dequant_q5_1); break;
    case GgmlType::Q8_0: each(detail::dequant_q8_0); break;
    case GgmlType::Q2_K: each(detail::dequant_q2_k); break;
    case GgmlType::Q3_K: each(detail::dequant_q3_k); break;
    case GgmlType::Q4_K: each(detail::dequant_q4_k); break;
    case GgmlType::Q5_K: each(detail::dequant_q5_k); break;
    case GgmlType::Q6_K: each(detail::dequant_q6_k); break;
    default: throw InvalidArgument("dequantize: unsupported type " + std::string(t.name));
  }
}

/// The types the quantiser writes: F32, F16, BF16 and Q8_0.
inline bool can_quantize(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 || type == GgmlType::Q8_0;
}

/// Converts float32 values into `type`'s bytes (`out` must hold values.size()/block_size blocks).
/// Throws NonFiniteError for NaN/Inf input or a value that overflows F16, InvalidArgument for a
/// size mismatch or an unsupported type.
inline void quantize(GgmlType type, std::span<const float> values, std::span<std::uint8_t> out) {
  if (!can_quantize(type))
    throw InvalidArgument("quantize: cannot write " + ggml_type_name(type) + "; choose F32, F16, BF16 or Q8_0");
  const GgmlTypeTraits t = ggml_type_traits(type);
  if (values.size() % t.block_size != 0 || values.size() / t.block_size * t.type_size != out.size())
    throw InvalidArgument("quantize: " + std::to_string(values.size()) + " floats do not fill " +
                          std::to_string(out.size()) + " bytes of " + std::string(t.name) +
                          " (the row length must be a multiple of " + std::to_string(t.block_size) + ")");
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      throw NonFiniteError("quantize: value " + std::to_string(i) + " is not finite; refusing to write it");
  std::uint8_t* o = out.data();
  auto put16 = [](std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v & 0xffu);
    p[1] = static_cast<std::uint8_t>(v >> 8);
  };
  switch (type) {
    case GgmlType::F32:
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint32_t b = std::bit_cast<std::uint32_t>(values[i]);
        for (int k = 0; k < 4; ++k) o[4 * i + k] = static_cast<std::uint8_t>(b >> (8 * k));
      }
      break;
    case GgmlType::F16:
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t h = fp32_to_fp16(values[i]);
        if ((h & 0x7c00u) == 0x7c00u)
          throw NonFiniteError("quantize: value " + std::to_string(i) + " = " + std::to_string(values[i]) +
                               " overflows F16 (|x| >= 65520); write this tensor as F32 or BF16");
        put16(o + 2 * i, h);
      }
      break;
    case GgmlType::BF16:
      for (std::size_t i = 0; i < values.size(); ++i) put16(o + 2 * i, fp32_to_bf16(values[i]));
      break;
    case GgmlType::Q8_0:
      for (std::size_t b = 0; b < values.size() / 32; ++b) {
        const float* x = values.data() + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!(d < 65520.0f))
          throw NonFiniteError("quantize: block " + std::to_string(b) + " has |x| up to " + std::to_string(amax) +
                               ", beyond Q8_0's range (scale overflows F16); write this tensor as F32 or BF16");
        std::uint8_t* block = o + 34 * b;
        put16(block, fp32_to_fp16(d));
        for (int j = 0; j < 32; ++j) {
          const float scaled = x[j] * id;
          block[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(scaled)));
        }
      }
      break;
    default: break;
  }
}

}  // namespace fisher_unlearn
