#include "ostrov/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <type_traits>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/Dict.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/optim/adagrad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/optim/rmsprop.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/io/weights.h"

namespace fs = std::filesystem;

namespace ostrov::io {

namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kPayload = "payload";
constexpr const char* kMeta = "meta.json";
constexpr const char* kChecksum = "checksum";

std::string errno_text() { return std::strerror(errno); }

// ------------------------------------------------------------------------ optimizer state
//
// torch::optim's archive ("pytorch_version" 1.5.0): `state` holds one archive per parameter,
// keyed by its TensorImpl address as text, and `param_groups/i` lists those keys in parameter
// order with the group's options. LibTorch 1.13 writes the address in hex and uses the keys as
// strings; 2.x writes it in decimal and parses it back with std::stoull, so 2.x's own
// Optimizer::load reads every key of a 1.x file as 0 and leaves null states that crash in
// step(). This reader takes the keys as opaque strings, as 1.x did, and so reads the files of
// either version on either (docs/architecture.md, "Platforms"). Like 2.x and PyTorch's
// load_state_dict, it restores the groups' options too.

/// The optimizer's state-map key of `param`: its TensorImpl address, as text in 1.13 (the map
/// is keyed by std::string) or as the pointer in 2.x.
template <typename StateMap>
typename StateMap::key_type state_key(const at::Tensor& param) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;  // what c10::guts::to_string(TensorImpl*) gave
    text << param.unsafeGetTensorImpl();
    return text.str();
  } else {
    return static_cast<Key>(param.unsafeGetTensorImpl());
  }
}

template <typename Optim, typename ParamState, typename Options>
bool load_optimizer_as(torch::serialize::InputArchive& archive,
                       torch::optim::Optimizer& optimizer) {
  if (dynamic_cast<Optim*>(&optimizer) == nullptr) return false;
  torch::serialize::InputArchive states;
  torch::serialize::InputArchive groups;
  archive.read("state", states);
  archive.read("param_groups", groups);
  at::Tensor group_count;
  groups.read("param_groups/size", group_count);
  TORCH_CHECK(group_count.item<int64_t>() == static_cast<int64_t>(optimizer.param_groups().size()),
              "the checkpoint has ", group_count.item<int64_t>(),
              " parameter groups, the optimizer ", optimizer.param_groups().size());
  auto& state = optimizer.state();
  state.clear();
  for (size_t i = 0; i < optimizer.param_groups().size(); ++i) {
    auto& group = optimizer.param_groups()[i];
    torch::serialize::InputArchive saved_group;
    groups.read("param_groups/" + std::to_string(i), saved_group);
    at::Tensor param_count;
    saved_group.read("params/size", param_count);
    TORCH_CHECK(param_count.item<int64_t>() == static_cast<int64_t>(group.params().size()),
                "parameter group ", i, " has ", param_count.item<int64_t>(),
                " parameters in the checkpoint, ", group.params().size(), " in the optimizer");
    for (size_t j = 0; j < group.params().size(); ++j) {
      c10::IValue key;
      saved_group.read("params/" + std::to_string(j), key);
      torch::serialize::InputArchive saved_state;
      if (!states.try_read(key.toStringRef(), saved_state)) continue;  // no step taken yet
      auto param_state = std::make_unique<ParamState>();
      param_state->serialize(saved_state);
      state[state_key<std::decay_t<decltype(state)>>(group.params()[j])] = std::move(param_state);
    }
    torch::serialize::InputArchive saved_options;
    saved_group.read("options", saved_options);
    Options options(0);
    options.serialize(saved_options);
    static_cast<Options&>(group.options()) = options;
  }
  return true;
}

/// Loads `archive` (Optimizer::save of any LibTorch version) into `optimizer`.
void load_optimizer(torch::serialize::InputArchive& archive, torch::optim::Optimizer& optimizer) {
  namespace optim = torch::optim;
  c10::IValue version;
  // Archives older than torch::optim's 1.5.0 format are read the same way by every version.
  const bool current = archive.try_read("pytorch_version", version);
  if (current &&
      (load_optimizer_as<optim::SGD, optim::SGDParamState, optim::SGDOptions>(archive, optimizer) ||
       load_optimizer_as<optim::Adam, optim::AdamParamState, optim::AdamOptions>(archive, optimizer) ||
       load_optimizer_as<optim::AdamW, optim::AdamWParamState, optim::AdamWOptions>(archive,
                                                                                  optimizer) ||
       load_optimizer_as<optim::RMSprop, optim::RMSpropParamState, optim::RMSpropOptions>(
           archive, optimizer) ||
       load_optimizer_as<optim::Adagrad, optim::AdagradParamState, optim::AdagradOptions>(
           archive, optimizer))) {
    return;
  }
  optimizer.load(archive);  // other optimizers: LibTorch's own reader
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;  // best effort for folders on filesystems that refuse it
  ::fsync(fd);
  ::close(fd);
}

uint32_t crc32_of(const std::string& a, const std::string& b) {
  uLong crc = crc32(0L, Z_NULL, 0);
  auto feed = [&crc](const std::string& s) {
    const auto* p = reinterpret_cast<const Bytef*>(s.data());
    size_t left = s.size();
    while (left > 0) {  // zlib takes uInt lengths
      const uInt chunk = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
      crc = crc32(crc, p, chunk);
      p += chunk;
      left -= chunk;
    }
  };
  feed(a);
  feed(b);
  return static_cast<uint32_t>(crc);
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw IoError(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string record(caffe2::serialize::PyTorchStreamReader& reader, const std::string& name,
                   const std::string& path) {
  if (!reader.hasRecord(name)) {
    throw IoError(path + ": not an ostrov checkpoint (no '" + name + "' record)");
  }
  at::DataPtr data;
  size_t size = 0;
  std::tie(data, size) = reader.getRecord(name);
  return std::string(static_cast<const char*>(data.get()), size);
}

struct RawCheckpoint {
  std::string payload;
  CheckpointMeta meta;
};

RawCheckpoint read_raw(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 4 || bytes.compare(0, 2, "PK") != 0) {
    throw IoError(path + ": not an ostrov checkpoint (not a zip archive" +
                  std::string(bytes.empty() ? ", the file is empty)" : ")"));
  }
  RawCheckpoint raw;
  std::string meta_text;
  std::string checksum_text;
  try {
    std::istringstream stream(bytes);
    caffe2::serialize::PyTorchStreamReader reader(&stream);
    raw.payload = record(reader, kPayload, path);
    meta_text = record(reader, kMeta, path);
    checksum_text = record(reader, kChecksum, path);
  } catch (const c10::Error& e) {
    throw IoError(path + ": truncated or corrupt checkpoint (" + e.what_without_backtrace() + ")");
  }
  const uint32_t expected = static_cast<uint32_t>(std::strtoul(checksum_text.c_str(), nullptr, 16));
  const uint32_t actual = crc32_of(raw.payload, meta_text);
  if (expected != actual) {
    std::ostringstream os;
    os << path << ": checksum mismatch (stored " << std::hex << expected << ", computed " << actual
       << "): the file is corrupt";
    throw IoError(os.str());
  }
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(meta_text);
  } catch (const nlohmann::json::exception& e) {
    throw IoError(path + ": corrupt meta.json: " + e.what());
  }
  const int version = meta.value("format_version", -1);
  if (version != kFormatVersion) {
    throw IoError(path + ": checkpoint format version " + std::to_string(version) +
                  " is not supported (this ostrov reads version " +
                  std::to_string(kFormatVersion) + ")");
  }
  raw.meta.step = meta.value("step", int64_t{0});
  raw.meta.epoch = meta.value("epoch", int64_t{0});
  raw.meta.config = meta.value("config", nlohmann::json::object());
  raw.meta.extra = meta.value("extra", nlohmann::json::object());
  return raw;
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const fs::path target(path);
  fs::path folder = target.parent_path();
  if (folder.empty()) folder = ".";
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) {
    throw IoError(path + ": folder " + folder.string() + " does not exist");
  }
  std::random_device rd;
  const std::string tmp =
      (folder / ("." + target.filename().string() + ".tmp" + std::to_string(rd()))).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path + ": cannot create temporary file: " + errno_text());
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw IoError(path + ": write failed: " + why);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw IoError(path + ": fsync/close failed: " + why);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw IoError(path + ": rename failed: " + why);
  }
  fsync_path(folder.string(), /*directory=*/true);
}

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointMeta& meta) {
  std::string payload;
  try {
    torch::serialize::OutputArchive archive;
    c10::Dict<std::string, at::Tensor> tensors;
    for (const auto& item : module_state_dict(model)) {
      tensors.insert(item.key(), item.value().detach().to(at::kCPU));
    }
    archive.write("model", c10::IValue(tensors));
    if (optimizer != nullptr) {
      torch::serialize::OutputArchive optim_archive;
      optimizer->save(optim_archive);
      archive.write("optimizer", optim_archive);
    }
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      archive.write("rng_cpu", gen.get_state());
    }
    // Every CUDA device's generator too (dropout, random augmentation on the GPU), so a resume
    // on the GPU continues the same random stream. None on a machine without CUDA.
    for (size_t i = 0; i < torch::cuda::device_count(); ++i) {
      auto gen = at::globalContext().defaultGenerator(
          c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      archive.write("rng_cuda_" + std::to_string(i), gen.get_state());
    }
    archive.save_to([&payload](const void* data, size_t size) {
      payload.append(static_cast<const char*>(data), size);
      return size;
    });
  } catch (const c10::Error& e) {
    throw IoError(path + ": cannot serialise checkpoint: " + e.what_without_backtrace());
  }

  nlohmann::json meta_json = {{"format_version", kFormatVersion},
                              {"step", meta.step},
                              {"epoch", meta.epoch},
                              {"has_optimizer", optimizer != nullptr},
                              {"config", meta.config},
                              {"extra", meta.extra}};
  const std::string meta_text = meta_json.dump(2);
  char checksum[16];
  std::snprintf(checksum, sizeof(checksum), "%08x", crc32_of(payload, meta_text));

  std::string file;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&file](const void* data, size_t size) {
      file.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord(kPayload, payload.data(), payload.size());
    writer.writeRecord(kMeta, meta_text.data(), meta_text.size());
    writer.writeRecord(kChecksum, checksum, 8);
    writer.writeEndOfFile();
  }
  write_file_atomic(path, file);
}

CheckpointMeta read_checkpoint_meta(const std::string& path) { return read_raw(path).meta; }

CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer, bool restore_rng) {
  RawCheckpoint raw = read_raw(path);
  torch::serialize::InputArchive archive;
  StateDict state;
  at::Tensor rng;
  std::vector<at::Tensor> cuda_rng;  // devices 0, 1, ... while present
  try {
    archive.load_from(raw.payload.data(), raw.payload.size());
    c10::IValue model_value;
    archive.read("model", model_value);
    for (const auto& item : model_value.toGenericDict()) {
      state.insert(item.key().toStringRef(), item.value().toTensor());
    }
    if (restore_rng) {
      archive.read("rng_cpu", rng);
      // CUDA generators of the devices this machine has; states of devices it lacks (a GPU
      // checkpoint resumed elsewhere) are skipped: that resume cannot be exact anyway.
      for (size_t i = 0; i < torch::cuda::device_count(); ++i) {
        at::Tensor state;
        if (!archive.try_read("rng_cuda_" + std::to_string(i), state)) break;
        cuda_rng.push_back(state);
      }
    }
  } catch (const c10::Error& e) {
    throw IoError(path + ": corrupt checkpoint payload: " + e.what_without_backtrace());
  }
  // Validate everything before touching the model.
  const StateDictDiff diff = compare_state_dict(model, state);
  if (!diff.empty()) {
    std::ostringstream os;
    os << path << ": checkpoint does not match the model (another model or config?)";
    for (const auto& k : diff.missing) os << "\n  missing: " << k;
    for (const auto& k : diff.unexpected) os << "\n  unexpected: " << k;
    for (const auto& k : diff.mismatched) os << "\n  wrong shape: " << k;
    throw IoError(os.str());
  }
  load_state_dict_into(model, state, /*strict=*/true, path);
  if (optimizer != nullptr) {
    try {
      torch::serialize::InputArchive optim_archive;
      if (!archive.try_read("optimizer", optim_archive)) {
        throw IoError(path + ": checkpoint has no optimizer state");
      }
      load_optimizer(optim_archive, *optimizer);
    } catch (const c10::Error& e) {
      throw IoError(path + ": optimizer state does not match the optimizer: " +
                    e.what_without_backtrace());
    }
  }
  if (restore_rng) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
    for (size_t i = 0; i < cuda_rng.size(); ++i) {
      auto cuda = at::globalContext().defaultGenerator(
          c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> cuda_lock(cuda.mutex());
      cuda.set_state(cuda_rng[i]);
    }
  }
  return raw.meta;
}

}  // namespace ostrov::io
