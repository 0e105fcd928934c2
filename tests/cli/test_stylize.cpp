// `ostrov stylize`, run in-process through its registration (tools/ostrov/stylize.cpp linked
// into the tests): output written at the requested size with intermediate frames, bad files
// named, out-of-range sizes refused by the parser, no partial output.
#include "catch.h"

#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <opencv2/imgcodecs.hpp>

#include "../../tools/ostrov/commands.h"
#include "ostrov/core/error.h"
#include "support.h"

namespace ostrov::cli {
Command add_stylize(CLI::App& app);  // tools/ostrov/stylize.cpp
}

using ostrov::test::TempDir;

namespace {

const std::string kData = std::string(OSTROV_SOURCE_DIR) + "/data/";

/// Parses `args` (without the program name) and runs the stylize command.
int stylize(const std::string& args) {
  CLI::App app{"ostrov"};
  app.require_subcommand(1);
  auto command = ostrov::cli::add_stylize(app);
  app.parse("stylize " + args, /*program_name_included=*/false);
  return command();
}

size_t files_in(const TempDir& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("ostrov stylize writes the output at --size with frames every --save-every steps",
          "[cli][style]") {
  TempDir dir;
  const std::string out = dir / "out.png";
  CHECK(stylize("--content " + kData + "chelsea.png --style " + kData +
                "starry_night.jpg --output " + out +
                " --size 32 --steps 2 --optimizer adam --save-every 1 --seed 3") ==
        ostrov::cli::kExitOk);
  const cv::Mat image = cv::imread(out);
  REQUIRE_FALSE(image.empty());
  CHECK(image.cols == 32);  // chelsea is 451x300
  CHECK(image.rows == 21);
  CHECK(std::filesystem::exists(dir / "out_0001.png"));
  CHECK(std::filesystem::exists(dir / "out_0002.png"));
  CHECK(files_in(dir) == 3);  // no temporary files left
}

TEST_CASE("ostrov stylize names a missing or broken image and writes nothing", "[cli][style]") {
  TempDir dir;
  const std::string out = dir / "out.png";
  CHECK_THROWS_WITH(stylize("--content " + (dir / "nope.png") + " --style " + kData +
                            "starry_night.jpg --output " + out + " --size 16 --steps 1"),
                    Catch::Contains(dir / "nope.png"));
  ostrov::test::write_bytes(dir / "broken.jpg", "not a jpeg");
  CHECK_THROWS_AS(stylize("--content " + kData + "chelsea.png --style " + (dir / "broken.jpg") +
                          " --output " + out + " --size 16 --steps 1"),
                  ostrov::IoError);
  CHECK_THROWS_WITH(stylize("--content " + kData + "chelsea.png --style " + kData +
                            "starry_night.jpg --output " + (dir / "no/such/dir/out.png") +
                            " --size 16 --steps 1"),
                    Catch::Contains("no/such/dir"));
  ostrov::test::write_bytes(dir / "weights.pth", "not a zip");
  CHECK_THROWS_WITH(stylize("--content " + kData + "chelsea.png --style " + kData +
                            "starry_night.jpg --output " + out +
                            " --size 16 --steps 1 --weights " + (dir / "weights.pth")),
                    Catch::Contains("weights.pth"));
  CHECK_THROWS_AS(stylize("--content " + kData + "chelsea.png --style " + kData +
                          "starry_night.jpg --output " + out + " --style-blend 1 --style-blend 2"),
                  ostrov::ConfigError);
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("ostrov stylize refuses a size of 0 or above the limit and unknown optimisers",
          "[cli][style]") {
  const std::string io = "--content a.png --style b.png --output c.png";
  CHECK_THROWS_AS(stylize(io + " --size 0"), CLI::ValidationError);
  CHECK_THROWS_AS(stylize(io + " --size 5000"), CLI::ValidationError);
  CHECK_THROWS_AS(stylize(io + " --steps 0"), CLI::ValidationError);
  CHECK_THROWS_AS(stylize(io + " --optimizer sgd"), CLI::ValidationError);
  CHECK_THROWS_AS(stylize("--style b.png --output c.png"), CLI::RequiredError);
}
