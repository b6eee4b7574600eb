# Helpers that keep per-component CMakeLists short and uniform.
include(GoogleTest)

# trellis_library(NAME name SOURCES ... DEPS ...): one static library per component.
function(trellis_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS" ${ARGN})
  add_library(${ARG_NAME} STATIC ${ARG_SOURCES})
  target_include_directories(${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${ARG_NAME} PUBLIC ${ARG_DEPS})
endfunction()

# trellis_test(NAME name SOURCES ... DEPS ... [LABEL unit] [FILTER_LABELS pattern label ...]):
# a gtest binary whose tests are registered one by one with ctest. FILTER_LABELS gives
# extra (gtest filter, label) pairs so one binary can hold tests with several labels.
function(trellis_test)
  cmake_parse_arguments(ARG "" "NAME;LABEL" "SOURCES;DEPS;FILTER_LABELS" ${ARGN})
  if(NOT ARG_LABEL)
    set(ARG_LABEL unit)
  endif()
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock
                        GTest::gtest_main)
  set(negative "")
  set(pairs ${ARG_FILTER_LABELS})
  while(pairs)
    list(POP_FRONT pairs filter label)
    gtest_discover_tests(${ARG_NAME} TEST_FILTER ${filter} PROPERTIES LABELS ${label}
                         DISCOVERY_TIMEOUT 60 DISCOVERY_MODE PRE_TEST)
    string(APPEND negative ":${filter}")
  endwhile()
  if(negative)
    set(filter "-${negative}")
    string(REPLACE "-:" "-" filter "${filter}")
  else()
    set(filter "*")
  endif()
  gtest_discover_tests(${ARG_NAME} TEST_FILTER ${filter} PROPERTIES LABELS ${ARG_LABEL}
                       DISCOVERY_TIMEOUT 60 DISCOVERY_MODE PRE_TEST)
endfunction()
