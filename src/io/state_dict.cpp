// Reading and writing the zip files of Python's `torch.save` (torch >= 1.6) without Python.
//
// A `torch.save` file is a zip (written by caffe2::serialize::PyTorchStreamWriter or its Python
// twin) whose records sit in one top folder that the reader strips:
//   data.pkl     the object, pickled with protocol 2; every tensor is
//                `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and every
//                storage a persistent id `('storage', torch.FloatStorage, key, location, numel)`
//   data/<key>   the raw little-endian bytes of that storage
//   version      the format version
// LibTorch's own unpickler (torch::pickle_load) turns collections.OrderedDict into None
// (pytorch#36577), so this file has a small pickle machine of its own that knows exactly the
// opcodes and globals torch.save emits, and refuses everything else with an ostrov::IoError.

// <torch/ordered_dict.h> (included by state_dict.h) uses TORCH_CHECK without including it.
#include <c10/util/Exception.h>
// (a blank line keeps clang-format from sorting the two)

#include "ostrov/io/state_dict.h"

#include <ATen/Functions.h>
#include <ATen/core/Tensor.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ostrov/core/error.h"
#include "ostrov/io/checkpoint.h"

namespace ostrov::io {
namespace {

// ---------------------------------------------------------------------------------------------
// Errors

[[noreturn]] void fail(const char* fn, const std::string& path, const std::string& what) {
  throw IoError(std::string(fn) + ": " + path + ": " + what);
}

std::string hex_byte(uint8_t b) {
  static const char* kDigits = "0123456789abcdef";
  std::string s = "0x";
  s += kDigits[b >> 4];
  s += kDigits[b & 0xf];
  return s;
}

std::string resave_hint(const std::string& path) {
  return "re-save it in the zip format with Python (torch>=1.6 writes it by default): "
         "python3 -c \"import torch; p='" +
         path + "'; torch.save(torch.load(p), p)\"";
}

// ---------------------------------------------------------------------------------------------
// Storage types <-> dtypes

struct StorageType {
  const char* name;  // the global's name in module `torch`
  at::ScalarType dtype;
};

constexpr std::array<StorageType, 12> kStorageTypes = {{
    {"FloatStorage", at::kFloat},
    {"DoubleStorage", at::kDouble},
    {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16},
    {"LongStorage", at::kLong},
    {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},
    {"CharStorage", at::kChar},
    {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool},
    {"ComplexFloatStorage", at::kComplexFloat},
    {"ComplexDoubleStorage", at::kComplexDouble},
}};

/// "torch.FloatStorage" -> kFloat; false when `global` is no storage type.
bool storage_dtype(const std::string& global, at::ScalarType* dtype) {
  static const std::string kPrefix = "torch.";
  if (global.compare(0, kPrefix.size(), kPrefix) != 0) return false;
  const std::string name = global.substr(kPrefix.size());
  for (const auto& t : kStorageTypes) {
    if (name == t.name) {
      *dtype = t.dtype;
      return true;
    }
  }
  return false;
}

const char* storage_name(at::ScalarType dtype) {
  for (const auto& t : kStorageTypes) {
    if (t.dtype == dtype) return t.name;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Pickle values

enum class Kind {
  kNone,
  kBool,
  kInt,
  kBigInt,
  kFloat,
  kStr,
  kTuple,
  kList,
  kDict,
  kGlobal,
  kTensor,
  kStorage
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kBigInt:
      return "int (more than 64 bits)";
    case Kind::kFloat:
      return "float";
    case Kind::kStr:
      return "str";
    case Kind::kTuple:
      return "tuple";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kGlobal:
      return "global";
    case Kind::kTensor:
      return "tensor";
    case Kind::kStorage:
      return "storage";
  }
  return "?";
}

/// One unpickled object. Values live in the Unpickler's arena and point at each other with raw
/// pointers, so reference cycles a hostile pickle builds cannot leak.
struct Value {
  explicit Value(Kind k) : kind(k) {}
  Kind kind;
  int64_t i = 0;                                  // kInt, kBool
  double f = 0.0;                                 // kFloat
  std::string s;                                  // kStr; kGlobal: "module.name"
  std::vector<Value*> items;                      // kTuple, kList
  std::vector<std::pair<Value*, Value*>> dict;    // kDict, in insertion order
  std::unordered_map<std::string, size_t> index;  // kDict: hashable key -> position in dict
  at::Tensor tensor;                              // kTensor; kStorage: 1-D tensor owning it
};

/// Python's dict-key identity for the keys we can hash ("" for the others).
std::string hash_key(const Value* k) {
  switch (k->kind) {
    case Kind::kStr:
      return "s" + k->s;
    case Kind::kInt:
    case Kind::kBool:
      return "i" + std::to_string(k->i);  // True == 1 in Python
    case Kind::kNone:
      return "n";
    default:
      return "";
  }
}

void dict_set(Value* d, Value* k, Value* v) {
  const std::string h = hash_key(k);
  if (!h.empty()) {
    auto it = d->index.find(h);
    if (it != d->index.end()) {
      d->dict[it->second].second = v;
      return;
    }
    d->index.emplace(h, d->dict.size());
  }
  d->dict.emplace_back(k, v);
}

// Globals torch.save emits for dicts of tensors (besides the storage types).
const char* const kOrderedDict = "collections.OrderedDict";
const char* const kRebuildTensorV2 = "torch._utils._rebuild_tensor_v2";
const char* const kRebuildParameter = "torch._utils._rebuild_parameter";
const char* const kRebuildParameterWithState = "torch._utils._rebuild_parameter_with_state";
const char* const kRebuildFromTypeV2 = "torch._tensor._rebuild_from_type_v2";

bool known_global(const std::string& name) {
  static const char* const kKnown[] = {
      kOrderedDict, kRebuildTensorV2, kRebuildParameter, kRebuildParameterWithState,
      kRebuildFromTypeV2,
      // tensor classes, only as the `new_type` argument of _rebuild_from_type_v2
      "torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter"};
  for (const char* k : kKnown) {
    if (name == k) return true;
  }
  at::ScalarType dtype;
  return storage_dtype(name, &dtype);
}

// ---------------------------------------------------------------------------------------------
// The pickle machine

class Unpickler {
 public:
  Unpickler(const std::string& path, const uint8_t* data, size_t size,
            caffe2::serialize::PyTorchStreamReader& reader)
      : path_(path), data_(data), size_(size), reader_(reader) {}

  /// Runs data.pkl to its STOP and returns the object (owned by this Unpickler).
  Value* run();

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail("load_state_dict", path_,
         "data.pkl: " + what + " (opcode at byte " + std::to_string(op_pos_) + ")");
  }

  // --- reading, every read bounds-checked
  const uint8_t* take(size_t n) {
    if (n > size_ - pos_)
      error("truncated pickle: needs " + std::to_string(n) + " more bytes, " +
            std::to_string(size_ - pos_) + " left");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }
  uint64_t read_le(size_t n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(p[k]) << (8 * k);
    return v;
  }
  std::string read_bytes(uint64_t n) {
    if (n > size_ - pos_)
      error("truncated pickle: a string of " + std::to_string(n) + " bytes, " +
            std::to_string(size_ - pos_) + " left");
    const uint8_t* p = take(static_cast<size_t>(n));
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  std::string read_line() {
    const uint8_t* begin = data_ + pos_;
    const void* nl = std::memchr(begin, '\n', size_ - pos_);
    if (nl == nullptr) error("truncated pickle: GLOBAL without its newline");
    const size_t n = static_cast<size_t>(static_cast<const uint8_t*>(nl) - begin);
    std::string s(reinterpret_cast<const char*>(begin), n);
    pos_ += n + 1;
    return s;
  }

  // --- values
  Value* make(Kind k) {
    arena_.push_back(std::make_unique<Value>(k));
    return arena_.back().get();
  }
  Value* make_int(int64_t v) {
    Value* x = make(Kind::kInt);
    x->i = v;
    return x;
  }
  Value* make_str(std::string s) {
    Value* x = make(Kind::kStr);
    x->s = std::move(s);
    return x;
  }

  // --- the stack; marks fence it as in CPython's _pickle
  size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Value* v) { stack_.push_back(v); }
  Value* pop() {
    if (stack_.size() <= fence()) error("pickle stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() const {
    if (stack_.size() <= fence()) error("pickle stack underflow");
    return stack_.back();
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) error("pickle has no MARK to pop to");
    const size_t k = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(k), stack_.end());
    stack_.resize(k);
    return items;
  }
  Value* expect(Value* v, Kind k, const char* what) const {
    if (v->kind != k) {
      error(std::string(what) + " should be a " + kind_name(k) + ", got a " + kind_name(v->kind));
    }
    return v;
  }

  void memo_put(uint64_t idx) { memo_[idx] = top(); }
  Value* memo_get(uint64_t idx) const {
    auto it = memo_.find(idx);
    if (it == memo_.end()) error("memo entry " + std::to_string(idx) + " read before written");
    return it->second;
  }

  void push_global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (!known_global(full)) {
      error("unsupported global '" + full +
            "'; only dicts of tensors and plain values can be read (save model.state_dict(), "
            "or move such objects out of the saved dict)");
    }
    Value* g = make(Kind::kGlobal);
    g->s = full;
    push(g);
  }

  Value* long_value(const std::string& bytes) {
    if (bytes.size() > 8) return make(Kind::kBigInt);
    uint64_t v = 0;
    for (size_t k = 0; k < bytes.size(); ++k) {
      v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[k])) << (8 * k);
    }
    if (!bytes.empty() && bytes.size() < 8 && (static_cast<uint8_t>(bytes.back()) & 0x80)) {
      v |= ~uint64_t{0} << (8 * bytes.size());  // sign-extend
    }
    return make_int(static_cast<int64_t>(v));
  }

  Value* call(Value* callable, Value* args);
  Value* persistent_load(Value* pid);
  Value* rebuild_tensor(const std::vector<Value*>& args);
  std::vector<int64_t> int_tuple(Value* v, const char* what) const;

  std::string path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  caffe2::serialize::PyTorchStreamReader& reader_;
  std::vector<std::unique_ptr<Value>> arena_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::unordered_map<std::string, Value*> storages_;  // record key -> storage, read once
};

Value* Unpickler::run() {
  while (pos_ < size_) {
    op_pos_ = pos_;
    const uint8_t op = *take(1);
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t proto = *take(1);
        if (proto < 2 || proto > 5) error("unsupported pickle protocol " + std::to_string(proto));
        break;
      }
      case 0x95:  // FRAME: an 8-byte length; frames only chunk the stream
        take(8);
        break;
      case 'c': {  // GLOBAL
        std::string module = read_line();
        std::string name = read_line();
        push_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = expect(pop(), Kind::kStr, "STACK_GLOBAL name");
        Value* module = expect(pop(), Kind::kStr, "STACK_GLOBAL module");
        push_global(module->s, name->s);
        break;
      }
      case '}':  // EMPTY_DICT
        push(make(Kind::kDict));
        break;
      case ']':  // EMPTY_LIST
        push(make(Kind::kList));
        break;
      case ')':  // EMPTY_TUPLE
        push(make(Kind::kTuple));
        break;
      case '(':  // MARK
        marks_.push_back(stack_.size());
        break;
      case 't': {  // TUPLE
        Value* t = make(Kind::kTuple);
        t->items = pop_mark();
        push(t);
        break;
      }
      case 0x85:    // TUPLE1
      case 0x86:    // TUPLE2
      case 0x87: {  // TUPLE3
        const size_t n = static_cast<size_t>(op - 0x85 + 1);
        Value* t = make(Kind::kTuple);
        t->items.resize(n);
        for (size_t k = n; k-- > 0;) t->items[k] = pop();
        push(t);
        break;
      }
      case 'l': {  // LIST
        Value* l = make(Kind::kList);
        l->items = pop_mark();
        push(l);
        break;
      }
      case 'd': {  // DICT
        std::vector<Value*> items = pop_mark();
        if (items.size() % 2 != 0) error("DICT with an odd number of items");
        Value* d = make(Kind::kDict);
        for (size_t k = 0; k < items.size(); k += 2) dict_set(d, items[k], items[k + 1]);
        push(d);
        break;
      }
      case 'a': {  // APPEND
        Value* v = pop();
        expect(top(), Kind::kList, "APPEND target")->items.push_back(v);
        break;
      }
      case 'e': {  // APPENDS
        std::vector<Value*> items = pop_mark();
        Value* l = expect(top(), Kind::kList, "APPENDS target");
        l->items.insert(l->items.end(), items.begin(), items.end());
        break;
      }
      case 's': {  // SETITEM
        Value* v = pop();
        Value* k = pop();
        dict_set(expect(top(), Kind::kDict, "SETITEM target"), k, v);
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<Value*> items = pop_mark();
        if (items.size() % 2 != 0) error("SETITEMS with an odd number of items");
        Value* d = expect(top(), Kind::kDict, "SETITEMS target");
        for (size_t k = 0; k < items.size(); k += 2) dict_set(d, items[k], items[k + 1]);
        break;
      }
      case 'X':  // BINUNICODE
        push(make_str(read_bytes(read_le(4))));
        break;
      case 0x8c:  // SHORT_BINUNICODE
        push(make_str(read_bytes(read_le(1))));
        break;
      case 0x8d:  // BINUNICODE8
        push(make_str(read_bytes(read_le(8))));
        break;
      case 'U':  // SHORT_BINSTRING
        push(make_str(read_bytes(read_le(1))));
        break;
      case 'T': {  // BINSTRING
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
        if (n < 0) error("BINSTRING with a negative length");
        push(make_str(read_bytes(static_cast<uint64_t>(n))));
        break;
      }
      case 'J':  // BININT
        push(make_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4)))));
        break;
      case 'K':  // BININT1
        push(make_int(static_cast<int64_t>(read_le(1))));
        break;
      case 'M':  // BININT2
        push(make_int(static_cast<int64_t>(read_le(2))));
        break;
      case 0x8a:  // LONG1
        push(long_value(read_bytes(read_le(1))));
        break;
      case 0x8b: {  // LONG4
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(read_le(4)));
        if (n < 0) error("LONG4 with a negative length");
        push(long_value(read_bytes(static_cast<uint64_t>(n))));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian IEEE 754 double
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
        Value* x = make(Kind::kFloat);
        std::memcpy(&x->f, &bits, sizeof bits);
        push(x);
        break;
      }
      case 'N':  // NONE
        push(make(Kind::kNone));
        break;
      case 0x88:    // NEWTRUE
      case 0x89: {  // NEWFALSE
        Value* b = make(Kind::kBool);
        b->i = op == 0x88 ? 1 : 0;
        push(b);
        break;
      }
      case 'q':  // BINPUT
        memo_put(read_le(1));
        break;
      case 'r':  // LONG_BINPUT
        memo_put(read_le(4));
        break;
      case 0x94:  // MEMOIZE
        memo_put(memo_.size());
        break;
      case 'h':  // BINGET
        push(memo_get(read_le(1)));
        break;
      case 'j':  // LONG_BINGET
        push(memo_get(read_le(4)));
        break;
      case 'Q':  // BINPERSID
        push(persistent_load(pop()));
        break;
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(call(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        Value* args = expect(pop(), Kind::kTuple, "NEWOBJ arguments");
        Value* cls = expect(pop(), Kind::kGlobal, "NEWOBJ class");
        if (cls->s != kOrderedDict) error("cannot create an object of class '" + cls->s + "'");
        (void)args;  // OrderedDict.__new__ ignores them; the items come with SETITEMS
        push(make(Kind::kDict));
        break;
      }
      case 'b': {  // BUILD
        Value* state = pop();
        Value* obj = top();
        // An OrderedDict state_dict carries {"_metadata": ...} (module versions) as its
        // instance state; it says nothing about the tensors, so it is dropped.
        if (obj->kind != Kind::kDict) {
          error(std::string("cannot set the state of a ") + kind_name(obj->kind));
        }
        (void)state;
        break;
      }
      case '0':  // POP
        if (stack_.size() > fence()) {
          stack_.pop_back();
        } else if (!marks_.empty()) {
          marks_.pop_back();
        } else {
          error("pickle stack underflow");
        }
        break;
      case '1':  // POP_MARK
        pop_mark();
        break;
      case '2':  // DUP
        push(top());
        break;
      case '.': {  // STOP
        Value* result = pop();
        return result;
      }
      default: {
        std::string shown = hex_byte(op);
        if (op >= 0x20 && op < 0x7f) shown += std::string(" '") + static_cast<char>(op) + "'";
        error("unsupported pickle opcode " + shown);
      }
    }
  }
  op_pos_ = pos_;
  error("truncated pickle: it ends before its STOP opcode");
}

std::vector<int64_t> Unpickler::int_tuple(Value* v, const char* what) const {
  expect(v, Kind::kTuple, what);
  std::vector<int64_t> out;
  out.reserve(v->items.size());
  for (Value* x : v->items) {
    if (x->kind != Kind::kInt) {
      error(std::string(what) + " should hold ints, got a " + kind_name(x->kind));
    }
    out.push_back(x->i);
  }
  return out;
}

Value* Unpickler::call(Value* callable, Value* args_value) {
  expect(callable, Kind::kGlobal, "REDUCE callable");
  expect(args_value, Kind::kTuple, "REDUCE arguments");
  const std::string& f = callable->s;
  const std::vector<Value*>& args = args_value->items;

  if (f == kOrderedDict) {
    if (!args.empty()) error("collections.OrderedDict called with arguments");
    return make(Kind::kDict);
  }
  if (f == kRebuildTensorV2) return rebuild_tensor(args);
  if (f == kRebuildParameter || f == kRebuildParameterWithState) {
    // (data, requires_grad, backward_hooks[, state]) -> the data; loaded tensors are plain.
    const size_t n = f == kRebuildParameter ? 3 : 4;
    if (args.size() != n) {
      error(f + " takes " + std::to_string(n) + " arguments, got " + std::to_string(args.size()));
    }
    return expect(args[0], Kind::kTensor, "the parameter's data");
  }
  if (f == kRebuildFromTypeV2) {
    // (func, new_type, args, state): a tensor subclass; keep the plain tensor func builds.
    if (args.size() != 4) error(f + " takes 4 arguments, got " + std::to_string(args.size()));
    return expect(call(args[0], args[2]), Kind::kTensor,
                  "the result of torch._tensor._rebuild_from_type_v2");
  }
  error("cannot call '" + f + "'");
}

Value* Unpickler::persistent_load(Value* pid) {
  // ('storage', storage_type, key, location, numel)
  if (pid->kind != Kind::kTuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::kStr ||
      pid->items[0]->s != "storage") {
    error("unsupported persistent id (expected ('storage', type, key, location, numel))");
  }
  Value* type = expect(pid->items[1], Kind::kGlobal, "storage type");
  at::ScalarType dtype;
  if (!storage_dtype(type->s, &dtype)) error("unsupported storage type '" + type->s + "'");
  Value* key_value = pid->items[2];
  std::string key;
  if (key_value->kind == Kind::kStr) {
    key = key_value->s;
  } else if (key_value->kind == Kind::kInt) {
    key = std::to_string(key_value->i);
  } else {
    error(std::string("storage key should be a str, got a ") + kind_name(key_value->kind));
  }
  expect(pid->items[3], Kind::kStr, "storage location");
  const int64_t numel = expect(pid->items[4], Kind::kInt, "storage size")->i;
  if (numel < 0) error("storage " + key + " has a negative size " + std::to_string(numel));

  auto cached = storages_.find(key);
  if (cached != storages_.end()) {
    if (cached->second->tensor.scalar_type() != dtype) {
      error("storage " + key + " is used with two dtypes");
    }
    return cached->second;
  }

  const std::string record = "data/" + key;
  if (!reader_.hasRecord(record)) error("record " + record + " is missing from the zip");
  at::DataPtr bytes;
  size_t nbytes = 0;
  std::tie(bytes, nbytes) = reader_.getRecord(record);
  const auto item = static_cast<uint64_t>(c10::elementSize(dtype));
  if (static_cast<uint64_t>(numel) > nbytes / item) {
    error("record " + record + " has " + std::to_string(nbytes) + " bytes, but its " +
          std::to_string(numel) + " " + std::string(c10::toString(dtype)) + " elements need " +
          std::to_string(static_cast<uint64_t>(numel) * item) + " (truncated or corrupt file)");
  }
  at::Tensor t = at::empty({numel}, at::TensorOptions().dtype(dtype));
  const size_t n = static_cast<size_t>(numel) * static_cast<size_t>(item);
  if (n > 0) {
    std::memcpy(t.data_ptr(), bytes.get(), n);
    if (dtype == at::kBool) {  // a bool that is neither 0 nor 1 is undefined behaviour in C++
      auto* p = static_cast<uint8_t*>(t.data_ptr());
      for (size_t k = 0; k < n; ++k) p[k] = p[k] != 0 ? 1 : 0;
    }
  }
  Value* s = make(Kind::kStorage);
  s->tensor = std::move(t);
  storages_.emplace(key, s);
  return s;
}

Value* Unpickler::rebuild_tensor(const std::vector<Value*>& args) {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  if (args.size() != 6 && args.size() != 7) {
    error(std::string(kRebuildTensorV2) + " takes 6 or 7 arguments, got " +
          std::to_string(args.size()));
  }
  const at::Tensor& storage = expect(args[0], Kind::kStorage, "tensor storage")->tensor;
  const int64_t offset = expect(args[1], Kind::kInt, "tensor storage offset")->i;
  const std::vector<int64_t> size = int_tuple(args[2], "tensor size");
  const std::vector<int64_t> stride = int_tuple(args[3], "tensor stride");
  if (size.size() != stride.size()) {
    error("tensor size has " + std::to_string(size.size()) + " dims but its stride " +
          std::to_string(stride.size()));
  }
  if (offset < 0) error("negative tensor storage offset " + std::to_string(offset));
  // The elements reached are offset + sum((size_i - 1) * stride_i); all must lie in the storage.
  bool empty = false;
  int64_t last = offset;
  bool overflow = false;
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d] < 0 || stride[d] < 0) {
      error("negative tensor size or stride in dim " + std::to_string(d) + ": size " +
            std::to_string(size[d]) + ", stride " + std::to_string(stride[d]));
    }
    if (size[d] == 0) empty = true;
    int64_t step = 0;
    if (size[d] > 0) {
      overflow = overflow || __builtin_mul_overflow(size[d] - 1, stride[d], &step) ||
                 __builtin_add_overflow(last, step, &last);
    }
  }
  const int64_t storage_numel = storage.numel();
  if (!empty && (overflow || last >= storage_numel)) {
    error("tensor of size " + std::string(c10::str(c10::IntArrayRef(size))) + ", stride " +
          std::string(c10::str(c10::IntArrayRef(stride))) + " and offset " +
          std::to_string(offset) + " reaches past its storage of " + std::to_string(storage_numel) +
          " elements");
  }
  Value* t = make(Kind::kTensor);
  t->tensor = storage.as_strided(size, stride, offset);  // shares the storage, as in Python
  return t;
}

// ---------------------------------------------------------------------------------------------
// Flattening nested dicts into a StateDict

constexpr int kMaxDepth = 64;

bool key_string(const Value* k, std::string* out) {
  switch (k->kind) {
    case Kind::kStr:
      *out = k->s;
      return true;
    case Kind::kInt:
      *out = std::to_string(k->i);
      return true;
    case Kind::kBool:
      *out = k->i != 0 ? "True" : "False";
      return true;
    default:
      return false;
  }
}

bool contains_tensor(const Value* v, int depth, const std::string& path) {
  if (depth > kMaxDepth) fail("load_state_dict", path, "objects nested too deeply (a cycle?)");
  switch (v->kind) {
    case Kind::kTensor:
      return true;
    case Kind::kTuple:
    case Kind::kList:
      return std::any_of(v->items.begin(), v->items.end(),
                         [&](const Value* x) { return contains_tensor(x, depth + 1, path); });
    case Kind::kDict:
      return std::any_of(v->dict.begin(), v->dict.end(), [&](const auto& kv) {
        return contains_tensor(kv.second, depth + 1, path);
      });
    default:
      return false;
  }
}

void flatten(const Value* d, const std::string& prefix, int depth, const std::string& path,
             StateDict* out) {
  if (depth > kMaxDepth) fail("load_state_dict", path, "dicts nested too deeply (a cycle?)");
  for (const auto& [k, v] : d->dict) {
    std::string key;
    if (!key_string(k, &key)) {
      if (contains_tensor(v, depth + 1, path)) {
        fail("load_state_dict", path,
             std::string("a dict key of type ") + kind_name(k->kind) + " under '" + prefix +
                 "' holds tensors; keys must be str or int");
      }
      continue;
    }
    const std::string name = prefix.empty() ? key : prefix + "." + key;
    if (v->kind == Kind::kTensor) {
      if (out->contains(name)) {
        fail("load_state_dict", path, "key '" + name + "' appears twice after flattening");
      }
      out->insert(name, v->tensor);
    } else if (v->kind == Kind::kDict) {
      flatten(v, name, depth + 1, path, out);
    }
    // Other leaves (ints, floats, strings, lists, None) are not tensors: skipped.
  }
}

// ---------------------------------------------------------------------------------------------
// File format checks

/// Throws unless `path` exists and starts like a zip; explains legacy and unknown formats.
void check_zip_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail("load_state_dict", path, "no such file");
  if (fs::is_directory(st)) fail("load_state_dict", path, "is a directory, not a file");

  std::ifstream in(path, std::ios::binary);
  if (!in) fail("load_state_dict", path, "cannot open for reading");
  std::array<uint8_t, 14> head{};
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  const auto got = static_cast<size_t>(in.gcount());
  if (got == 0) fail("load_state_dict", path, "empty file, not a torch.save zip");
  if (got >= 2 && head[0] == 'P' && head[1] == 'K') return;

  std::string shown;
  for (size_t k = 0; k < std::min<size_t>(got, 4); ++k) {
    shown += (k > 0 ? " " : "") + hex_byte(head[k]);
  }
  // Legacy torch.save: pickle protocol 2, then LONG1 of the magic 0x1950a86a20f9469cfc6c.
  static constexpr std::array<uint8_t, 14> kLegacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                      0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (got == head.size() && head == kLegacy) {
    fail("load_state_dict", path,
         "legacy (pre-1.6, _use_new_zipfile_serialization=False) torch.save format, which "
         "ostrov does not read; " +
             resave_hint(path));
  }
  if (head[0] == 0x80) {
    fail("load_state_dict", path,
         "a bare pickle (starts with bytes " + shown +
             "), not the zip of torch.save (torch >= 1.6); if it is a legacy torch.save file, " +
             resave_hint(path));
  }
  fail("load_state_dict", path,
       "unknown format (starts with bytes " + shown +
           "), not the zip of torch.save (torch >= 1.6); if it is an older torch.save file, " +
           resave_hint(path));
}

StateDict load_checked(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader reader(path);
  if (reader.hasRecord("constants.pkl")) {
    fail("load_state_dict", path,
         "a TorchScript archive (torch.jit.save), not a torch.save file; load it with "
         "torch::jit::load, or torch.save(model.state_dict(), p) in Python");
  }
  if (!reader.hasRecord("data.pkl")) {
    fail("load_state_dict", path, "zip without a data.pkl record, not a torch.save file");
  }
  at::DataPtr pkl;
  size_t pkl_size = 0;
  std::tie(pkl, pkl_size) = reader.getRecord("data.pkl");

  Unpickler unpickler(path, static_cast<const uint8_t*>(pkl.get()), pkl_size, reader);
  const Value* root = unpickler.run();
  if (root->kind != Kind::kDict) {
    fail("load_state_dict", path,
         std::string("holds a ") + kind_name(root->kind) +
             ", expected a dict of tensors (e.g. torch.save(model.state_dict(), p))");
  }
  StateDict out;
  flatten(root, "", 0, path, &out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

class PickleWriter {
 public:
  void op(uint8_t code) { out_.push_back(static_cast<char>(code)); }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) out_.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  }
  void str(const std::string& s) {  // BINUNICODE
    op('X');
    le(static_cast<uint64_t>(s.size()), 4);
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 0x100) {
      op('K');  // BININT1
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 0x10000) {
      op('M');  // BININT2
      le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');  // BININT
      le(static_cast<uint64_t>(static_cast<uint32_t>(static_cast<int32_t>(v))), 4);
    } else {
      op(0x8a);  // LONG1, 8 bytes two's complement
      le(8, 1);
      le(static_cast<uint64_t>(v), 8);
    }
  }
  void global(const char* module, const char* name) {
    op('c');
    out_ += module;
    out_ += '\n';
    out_ += name;
    out_ += '\n';
  }
  void int_tuple(c10::IntArrayRef values) {
    op('(');  // MARK
    for (int64_t v : values) integer(v);
    op('t');  // TUPLE
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

bool valid_utf8(const std::string& s) {
  size_t k = 0;
  while (k < s.size()) {
    const auto c = static_cast<uint8_t>(s[k]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++k;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n > s.size() - k - 1) return false;
    for (size_t j = 1; j <= n; ++j) {
      const auto cc = static_cast<uint8_t>(s[k + j]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    k += n + 1;
  }
  return true;
}

}  // namespace

StateDict load_state_dict(const std::string& path) {
  check_zip_file(path);
  try {
    return load_checked(path);
  } catch (const c10::Error& e) {
    fail("load_state_dict", path,
         std::string("cannot read (truncated or corrupt zip?): ") + e.what_without_backtrace());
  }
}

void save_state_dict(const StateDict& state, const std::string& path) {
  struct Entry {
    std::string storage_key;
    at::Tensor data;  // CPU, contiguous
    const char* storage_type;
  };
  std::vector<Entry> entries;
  entries.reserve(state.size());
  PickleWriter pkl;
  try {
    pkl.op(0x80);  // PROTO 2
    pkl.op(0x02);
    pkl.op('}');                         // EMPTY_DICT
    if (!state.is_empty()) pkl.op('(');  // MARK
    for (const auto& item : state) {
      const std::string& key = item.key();
      const at::Tensor& t = item.value();
      if (!t.defined()) fail("save_state_dict", path, "tensor '" + key + "' is undefined");
      if (t.layout() != at::kStrided || t.is_quantized()) {
        fail("save_state_dict", path,
             "tensor '" + key + "' has layout " + std::string(c10::str(t.layout())) +
                 (t.is_quantized() ? " (quantized)" : "") + "; only dense tensors are written");
      }
      const char* storage_type = storage_name(t.scalar_type());
      if (storage_type == nullptr) {
        fail("save_state_dict", path,
             "tensor '" + key + "' has unsupported dtype " +
                 std::string(c10::toString(t.scalar_type())));
      }
      if (!valid_utf8(key)) fail("save_state_dict", path, "key '" + key + "' is not UTF-8");
      at::Tensor data = t.detach().cpu().resolve_conj().resolve_neg().contiguous();
      const std::string storage_key = std::to_string(entries.size());

      pkl.str(key);
      pkl.global("torch._utils", "_rebuild_tensor_v2");
      pkl.op('(');  // MARK: the arguments
      pkl.op('(');  // MARK: the persistent id
      pkl.str("storage");
      pkl.global("torch", storage_type);
      pkl.str(storage_key);
      pkl.str("cpu");
      pkl.integer(data.numel());
      pkl.op('t');     // TUPLE
      pkl.op('Q');     // BINPERSID
      pkl.integer(0);  // storage offset
      pkl.int_tuple(data.sizes());
      pkl.int_tuple(data.strides());
      pkl.op(0x89);                              // NEWFALSE: requires_grad
      pkl.global("collections", "OrderedDict");  // backward_hooks = OrderedDict()
      pkl.op(')');                               // EMPTY_TUPLE
      pkl.op('R');                               // REDUCE
      pkl.op('t');                               // TUPLE
      pkl.op('R');                               // REDUCE
      entries.push_back({storage_key, std::move(data), storage_type});
    }
    if (!state.is_empty()) pkl.op('u');  // SETITEMS
    pkl.op('.');                         // STOP

    std::string bytes;
    caffe2::serialize::PyTorchStreamWriter writer([&bytes](const void* p, size_t n) -> size_t {
      if (n > 0) bytes.append(static_cast<const char*>(p), n);
      return n;
    });
    writer.writeRecord("data.pkl", pkl.bytes().data(), pkl.bytes().size());
    static const char kNothing = 0;
    for (const Entry& e : entries) {
      const size_t n = e.data.nbytes();
      writer.writeRecord("data/" + e.storage_key, n > 0 ? e.data.data_ptr() : &kNothing, n);
    }
    writer.writeEndOfFile();  // also writes the `version` record
    write_file_atomic(path, bytes);
  } catch (const c10::Error& e) {
    fail("save_state_dict", path, std::string("cannot write: ") + e.what_without_backtrace());
  }
}

}  // namespace ostrov::io
