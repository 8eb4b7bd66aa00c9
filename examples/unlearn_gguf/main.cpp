// unlearn_gguf: make a GGUF Llama model forget the given records and report what was checked.
//   unlearn_gguf --model in.gguf --forget records.txt [--retain text.txt] --out out.gguf --report DIR
// The phases are in tool.hpp; docs/unlearn_gguf.md has the options, the file formats and the report schema.
#include "tool.hpp"

int main(int argc, char** argv) { return unlearn_gguf::run(argc, argv); }
