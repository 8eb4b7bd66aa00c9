// Where the GGUF tests find their files. The real model: $FISHER_UNLEARN_SMOLLM2, else the default
// path compiled in (FISHER_UNLEARN_SMOLLM2_DEFAULT = <repo>/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf,
// where scripts/fetch_smollm2.sh puts it). Committed fixtures: FISHER_UNLEARN_TEST_DIR/gguf/.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace fisher_unlearn::testing {

inline std::filesystem::path test_data_dir() { return std::filesystem::path(FISHER_UNLEARN_TEST_DIR); }

/// The SmolLM2 file if present; nullopt (the caller WARNs and skips) when it is absent.
inline std::optional<std::filesystem::path> smollm2_path() {
  std::filesystem::path p = FISHER_UNLEARN_SMOLLM2_DEFAULT;
  if (const char* env = std::getenv("FISHER_UNLEARN_SMOLLM2"); env != nullptr && *env != '\0') p = env;
  std::error_code ec;
  if (std::filesystem::is_regular_file(p, ec)) return p;
  return std::nullopt;
}

inline std::string smollm2_skip_message() {
  return "SKIPPED: SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/fetch_smollm2.sh or set "
         "FISHER_UNLEARN_SMOLLM2); default path " FISHER_UNLEARN_SMOLLM2_DEFAULT;
}

inline std::string read_text_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace fisher_unlearn::testing
