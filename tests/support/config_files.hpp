/* Test support for the configuration tests (test_config*.cpp): an environment variable set
 * for one scope, and the check that loading a file fails with a dpool::Error(kConfig) naming
 * the file, the line and what is wrong. */
#pragma once

#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "dpool/config.hpp"
#include "dpool/error.hpp"

namespace dpool::test {

/* Sets or unsets an environment variable for one scope, restoring the old value after. */
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/* Runs `load`, which must throw dpool::Error(kConfig) whose message holds "<file>:<line>:" and
 * every one of `fragments`. */
inline void expect_config_error(const std::function<void()>& load, const std::string& file,
                                int line, std::initializer_list<std::string> fragments) {
  try {
    load();
    ADD_FAILURE() << "no error thrown";
  } catch (const dpool::Error& e) {
    EXPECT_EQ(e.code(), dpool::Errc::kConfig);
    const std::string what = e.what();
    EXPECT_NE(what.find(file + ":" + std::to_string(line) + ":"), std::string::npos)
        << "expected " << file << ":" << line << " in: " << what;
    for (const auto& f : fragments) {
      EXPECT_NE(what.find(f), std::string::npos) << "expected '" << f << "' in: " << what;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than dpool::Error: " << e.what();
  }
}

template <class Config>
void expect_config_error(const std::string& file, int line,
                         std::initializer_list<std::string> fragments) {
  expect_config_error([&] { Config c; dpool::load_config_file(file, c); }, file, line, fragments);
}

}  // namespace dpool::test
