#pragma once
// Umbrella header for users of ostrov (library code never includes it).

#include "ostrov/version.h"

#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/random.h"
#include "ostrov/core/runtime.h"

#include "ostrov/io/checkpoint.h"
#include "ostrov/io/json.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"

#include "ostrov/nn/conv_bn_act.h"
#include "ostrov/nn/fusion.h"
#include "ostrov/nn/receptive_field.h"
#include "ostrov/nn/upsample.h"

#include "ostrov/models/backbones/alexnet.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/backbones/vgg.h"

#include "ostrov/losses/segmentation.h"

#include "ostrov/metrics/confusion_matrix.h"
