// The client library's parsers of --coordinator, --peers and --token-file
// (coordinator/client/flags.h): table tests of what each accepts and refuses.
#include "coordinator/client/flags.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "coordinator/client/client_limits.h"

namespace cohort::coordinator {
namespace {

TEST(Flags, ParsePeers) {
  auto p = ParsePeers("1=127.0.0.1:5001,2=localhost:5002");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->size(), 2u);
  EXPECT_EQ(p->at(1), "127.0.0.1:5001");
  EXPECT_EQ(p->at(2), "localhost:5002");
  EXPECT_TRUE(
      ParsePeers("1=[::1]:5001,,").ok());  // empty items skipped; the port follows the last ':'
  for (const char* bad :
       {"", ",", "1=a:1,1=b:2", "0=a:1", "x=a:1", "1x=a:1", "=a:1", "1=nohostport",
        "1=a:", "1=a:1,2=b:2,3=c:3,4=d:4,5=e:5,6=f:6,7=g:7,8=h:8,9=i:9,10=j:10"}) {
    Result<std::map<uint64_t, std::string>> r = ParsePeers(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Flags, ParseEndpoints) {
  auto e = ParseEndpoints("a:1,,b:2");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, (std::vector<std::string>{"a:1", "b:2"}));
  std::string many;
  for (size_t i = 0; i <= limits::kMaxEndpoints; ++i) many += "h:" + std::to_string(i) + ",";
  for (const std::string& bad :
       {std::string(""), std::string(","), std::string("nohostport"), many}) {
    Result<std::vector<std::string>> r = ParseEndpoints(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Flags, ReadTokenFile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("cohort_flags_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& contents) {
    std::ofstream(dir / name, std::ios::binary) << contents;
    return (dir / name).string();
  };
  struct Row {
    std::string contents;
    bool ok;
    std::string token;  // when ok
  };
  const Row rows[] = {
      {"s3cret", true, "s3cret"},
      {"  s3cret \r\n\t", true, "s3cret"},
      {"two words\n", true, "two words"},
      {"", false, ""},
      {" \n\t\r ", false, ""},
      {std::string(limits::kMaxTokenBytes, 'x'), true, std::string(limits::kMaxTokenBytes, 'x')},
      {std::string(limits::kMaxTokenBytes + 1, 'x'), false, ""},
  };
  for (size_t i = 0; i < std::size(rows); ++i) {
    Result<std::string> t = ReadTokenFile(write("token" + std::to_string(i), rows[i].contents));
    ASSERT_EQ(t.ok(), rows[i].ok) << "row " << i;
    if (rows[i].ok) {
      EXPECT_EQ(*t, rows[i].token) << "row " << i;
    } else {
      EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << "row " << i;
    }
  }
  Result<std::string> missing = ReadTokenFile((dir / "absent").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cohort::coordinator
