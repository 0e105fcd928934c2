# ostrov_add_component(NAME <name> SOURCES ... [PUBLIC_DEPS ...] [PCH header])
#
# Creates the shared library `ostrov_<name>` with alias `ostrov::<name>`, its public headers
# under `<include_dir>/ostrov/...`, one precompiled header and the install rules.
function(ostrov_add_component)
  cmake_parse_arguments(ARG "" "NAME;INCLUDE_DIR;PCH" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target ostrov_${ARG_NAME})
  add_library(${target} SHARED ${ARG_SOURCES})
  add_library(ostrov::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES
    EXPORT_NAME ${ARG_NAME}
    OUTPUT_NAME ostrov_${ARG_NAME}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${ARG_INCLUDE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(OSTROV_SANITIZE)
    # A sanitized ostrov needs the ASan runtime loaded first in every program that links it,
    # outside projects (find_package) included: without it they crash at start.
    target_link_options(${target} INTERFACE -fsanitize=address,undefined)
  endif()
  if(OSTROV_USE_PCH AND ARG_PCH)
    target_precompile_headers(${target} PRIVATE ${ARG_PCH})
  endif()
  install(TARGETS ${target} EXPORT ostrovTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  if(NOT "${ARG_INCLUDE_DIR}" STREQUAL "${PROJECT_SOURCE_DIR}/include")
    install(DIRECTORY ${ARG_INCLUDE_DIR}/ostrov DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
endfunction()

# ostrov_add_program(<target> SOURCES ... [PCH header]): an executable linked to ostrov::ostrov.
function(ostrov_add_program target)
  cmake_parse_arguments(ARG "" "PCH" "SOURCES;DEPS" ${ARGN})
  add_executable(${target} ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE ${ARG_DEPS})
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(OSTROV_USE_PCH AND ARG_PCH)
    target_precompile_headers(${target} PRIVATE ${ARG_PCH})
  endif()
endfunction()
