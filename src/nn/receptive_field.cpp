#include "ostrov/nn/receptive_field.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <c10/util/Exception.h>

namespace ostrov::nn {

namespace {

LayerSpec conv(std::string name, int64_t kernel, int64_t stride, int64_t padding) {
  return LayerSpec{std::move(name), "conv", kernel, stride, padding, 1};
}

LayerSpec pool(std::string name, int64_t kernel, int64_t stride) {
  return LayerSpec{std::move(name), "pool", kernel, stride, 0, 1};
}

std::string format_double(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace

std::vector<LayerField> receptive_fields(const std::vector<LayerSpec>& layers,
                                         double input_start) {
  std::vector<LayerField> fields;
  fields.reserve(layers.size());
  int64_t jump = 1;
  int64_t rf = 1;
  double start = input_start;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& l = layers[i];
    TORCH_CHECK(l.kind == "conv" || l.kind == "pool", "receptive_fields: layer ", i, " \"",
                l.name, "\" has kind \"", l.kind, "\", expected \"conv\" or \"pool\"");
    TORCH_CHECK(l.kernel >= 1 && l.stride >= 1 && l.dilation >= 1 && l.padding >= 0,
                "receptive_fields: layer ", i, " \"", l.name, "\" needs kernel, stride and ",
                "dilation >= 1 and padding >= 0, got kernel=", l.kernel, " stride=", l.stride,
                " padding=", l.padding, " dilation=", l.dilation);
    const int64_t k_eff = l.dilation * (l.kernel - 1) + 1;
    start += ((static_cast<double>(k_eff) - 1.0) / 2.0 - static_cast<double>(l.padding)) *
             static_cast<double>(jump);
    rf += (k_eff - 1) * jump;
    jump *= l.stride;
    fields.push_back(LayerField{l.name, l.kernel, l.stride, l.padding, l.dilation, jump, rf,
                                start});
  }
  return fields;
}

std::vector<LayerSpec> alexnet_layers() {
  return {
      conv("conv1", 11, 4, 2), pool("pool1", 3, 2),      conv("conv2", 5, 1, 2),
      pool("pool2", 3, 2),     conv("conv3", 3, 1, 1),   conv("conv4", 3, 1, 1),
      conv("conv5", 3, 1, 1),  pool("pool5", 3, 2),
  };
}

std::vector<LayerSpec> vgg16_layers() {
  const std::array<int, 5> convs_per_block{2, 2, 3, 3, 3};
  std::vector<LayerSpec> layers;
  for (size_t b = 0; b < convs_per_block.size(); ++b) {
    const std::string block = std::to_string(b + 1);
    for (int c = 1; c <= convs_per_block[b]; ++c) {
      layers.push_back(conv("conv" + block + "_" + std::to_string(c), 3, 1, 1));
    }
    layers.push_back(pool("pool" + block, 2, 2));
  }
  return layers;
}

std::string format_receptive_fields(const std::vector<LayerField>& fields) {
  constexpr size_t kColumns = 8;
  const std::array<std::string, kColumns> header{"layer", "kernel",   "stride", "padding",
                                                 "dilation", "jump", "rf",     "start"};
  std::vector<std::array<std::string, kColumns>> rows;
  rows.reserve(fields.size() + 1);
  rows.push_back(header);
  for (const auto& f : fields) {
    rows.push_back({f.name, std::to_string(f.kernel), std::to_string(f.stride),
                    std::to_string(f.padding), std::to_string(f.dilation),
                    std::to_string(f.jump), std::to_string(f.receptive_field),
                    format_double(f.start)});
  }
  std::array<size_t, kColumns> width{};
  for (const auto& row : rows) {
    for (size_t c = 0; c < kColumns; ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::ostringstream out;
  for (const auto& row : rows) {
    // The layer name is left-aligned, the numbers right-aligned, two spaces between columns.
    out << row[0] << std::string(width[0] - row[0].size(), ' ');
    for (size_t c = 1; c < kColumns; ++c) {
      out << "  " << std::string(width[c] - row[c].size(), ' ') << row[c];
    }
    out << '\n';
  }
  return out.str();
}

}  // namespace ostrov::nn
