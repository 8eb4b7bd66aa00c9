# Optional CUDA backend: the STATIC library fisher_unlearn_cuda (alias fisher_unlearn::cuda) built from
# cuda/*.cu plus host glue, exported beside the header-only core. Included by the top-level
# CMakeLists.txt after the core target and before the install rules.
#
#   FISHER_UNLEARN_ENABLE_CUDA   default: ON when a CUDA compiler is found (check_language(CUDA)).
#                                Forced ON without one: configure fails and says what to install.
#   CMAKE_CUDA_ARCHITECTURES     default "90-real;90-virtual" (Hopper machine code + compute_90 PTX,
#                                which newer GPUs JIT-compile); set it (or CUDAARCHS) to override.

if(DEFINED FISHER_UNLEARN_ENABLE_CUDA AND NOT FISHER_UNLEARN_ENABLE_CUDA)
  return()  # switched off by the user: do not even look for nvcc
endif()
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_fisher_unlearn_cuda_default ON)
else()
  set(_fisher_unlearn_cuda_default OFF)
endif()
option(FISHER_UNLEARN_ENABLE_CUDA "Build the CUDA backend (fisher_unlearn::cuda)" ${_fisher_unlearn_cuda_default})

if(NOT FISHER_UNLEARN_ENABLE_CUDA)
  return()
endif()

if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR
    "FISHER_UNLEARN_ENABLE_CUDA is ON but no CUDA compiler (nvcc) was found. Install the CUDA toolkit "
    "and put nvcc on PATH (or pass -DCMAKE_CUDA_COMPILER=/path/to/nvcc), or configure with "
    "-DFISHER_UNLEARN_ENABLE_CUDA=OFF to build the header-only library alone.")
endif()

# Must be decided before enable_language(CUDA), which would otherwise pick the compiler's default.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

add_library(fisher_unlearn_cuda STATIC
  ${PROJECT_SOURCE_DIR}/cuda/runtime.cu
  ${PROJECT_SOURCE_DIR}/cuda/diagonal.cu
  ${PROJECT_SOURCE_DIR}/cuda/gram.cu
  ${PROJECT_SOURCE_DIR}/cuda/estimators.cpp)
add_library(fisher_unlearn::cuda ALIAS fisher_unlearn_cuda)
set_target_properties(fisher_unlearn_cuda PROPERTIES
  EXPORT_NAME cuda
  POSITION_INDEPENDENT_CODE ON
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_SEPARABLE_COMPILATION OFF)
target_compile_features(fisher_unlearn_cuda PUBLIC cxx_std_20)
# .cu files see only the public CUDA headers (no Eigen); the host glue .cpp sees the whole library.
target_link_libraries(fisher_unlearn_cuda
  PUBLIC fisher_unlearn::fisher_unlearn
  PRIVATE CUDA::cudart_static CUDA::cublas CUDA::cusolver)
# cuRAND is used through its header-only device API (Philox in the fused kernel): no host library.
set_target_properties(fisher_unlearn_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Static)
target_compile_options(fisher_unlearn_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU,Clang>>:-Wall -Wextra -Wpedantic>)

if(FISHER_UNLEARN_INSTALL)
  install(TARGETS fisher_unlearn_cuda EXPORT fisher_unlearnCudaTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT fisher_unlearnCudaTargets NAMESPACE fisher_unlearn::
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/fisher_unlearn)
  set(FISHER_UNLEARN_PACKAGE_HAS_CUDA ON)
endif()
