#include "resnet_encoder.h"

#include "ostrov/io/weights.h"

namespace ostrov::models::detail {

void load_resnet_without_fc(ResNetImpl& resnet, const io::StateDict& state,
                            const std::string& source) {
  io::StateDict filtered;
  for (const auto& item : state) {
    if (item.key().rfind("fc.", 0) != 0) {
      filtered.insert(item.key(), item.value());
    }
  }
  io::load_state_dict_into(resnet, filtered, /*strict=*/true, source);
}

}  // namespace ostrov::models::detail
