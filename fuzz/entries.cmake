# The fuzz targets' entry functions as one library, linked by the libFuzzer drivers
# (fuzz/CMakeLists.txt) and by the regression test (fuzz/regressions.cmake). Both may be in
# one build, so it is defined once, by whichever comes first.
if(NOT TARGET dpool_fuzz_entries)
  set(_dpool_fuzz ${PROJECT_SOURCE_DIR}/fuzz)
  add_library(dpool_fuzz_entries STATIC ${_dpool_fuzz}/fuzz_message.cpp ${_dpool_fuzz}/fuzz_link.cpp
    ${_dpool_fuzz}/fuzz_config.cpp ${_dpool_fuzz}/fuzz_args.cpp ${_dpool_fuzz}/seeds.cpp)
  # worker/src: fuzz_link reads the supervisor <-> child link, an internal of the worker.
  target_include_directories(dpool_fuzz_entries PUBLIC ${_dpool_fuzz} PRIVATE ${PROJECT_SOURCE_DIR}/worker/src)
  target_link_libraries(dpool_fuzz_entries PUBLIC dpool_client dpool_worker dpool_shared PRIVATE dpool_warnings)
endif()
