# The fuzz targets' regression test in the ordinary suite (any compiler, every sanitizer build):
# tests/CMakeLists.txt includes this file. test_fuzz_regressions replays through each target's
# entry function its generated seeds, the checked-in corpus (fuzz/corpus/<target>/) and every
# input a fuzzer once failed on (tests/fuzz_regressions/<target>/), without libFuzzer.
find_package(GTest REQUIRED)
include(GoogleTest)
include(${PROJECT_SOURCE_DIR}/fuzz/entries.cmake)

add_executable(test_fuzz_regressions ${PROJECT_SOURCE_DIR}/tests/test_fuzz_regressions.cpp)
target_link_libraries(test_fuzz_regressions PRIVATE dpool_fuzz_entries GTest::gtest_main dpool_warnings)
target_compile_definitions(test_fuzz_regressions PRIVATE DPOOL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
gtest_discover_tests(test_fuzz_regressions DISCOVERY_TIMEOUT 30 PROPERTIES TIMEOUT 120 LABELS unit)
