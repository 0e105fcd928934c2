# Every dependency comes from a Debian 12 package (scripts/install-deps.sh installs them).
find_package(Torch REQUIRED)
find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)  # palette (indexed-colour) class masks: core::read_mask
find_package(Threads REQUIRED)
# The OpenMP runtime of Debian's LibTorch, for core::use_one_thread_here (linked, not used to
# compile): without it helper threads keep LibTorch's full intra-op team.
find_package(OpenMP COMPONENTS CXX)

# TorchConfig exports plain variables; wrap them in one imported target so components
# link a target, not a list, and so the package config can recreate it for users.
if(NOT TARGET ostrov_torch_deps)
  add_library(ostrov_torch_deps INTERFACE IMPORTED GLOBAL)
  target_link_libraries(ostrov_torch_deps INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(ostrov_torch_deps INTERFACE ${TORCH_INCLUDE_DIRS})
endif()
