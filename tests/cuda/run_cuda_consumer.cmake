# Installs fisher_unlearn with the CUDA backend into WORK_DIR/prefix and builds and runs
# tests/cuda/consumer against it with find_package, as a user would.
cmake_minimum_required(VERSION 3.25)
foreach(var SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_cuda_consumer.cmake needs -D${var}=...")
  endif()
endforeach()
function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "CUDA consumer step failed (${rc}): ${ARGV}")
  endif()
endfunction()
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/library -DCMAKE_BUILD_TYPE=Release
         -DFISHER_UNLEARN_BUILD_TESTS=OFF -DFISHER_UNLEARN_BUILD_EXAMPLES=OFF -DFISHER_UNLEARN_ENABLE_CUDA=ON
         -DCMAKE_INSTALL_PREFIX=${prefix})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/library --target fisher_unlearn_cuda)
run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/library)
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cuda/consumer -B ${WORK_DIR}/consumer -DCMAKE_BUILD_TYPE=Release
         -DCMAKE_PREFIX_PATH=${prefix})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step(${WORK_DIR}/consumer/consumer_cuda)
