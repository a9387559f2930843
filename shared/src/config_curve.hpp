/* The `curve:` section of the config files, read and written for config.cpp's field tables.
 *
 * Kept apart from config.cpp because it does more than parse: every key a section names is
 * read at load time (a relative path taken from the config file's folder), so a bad key is
 * reported with the file and line that name it, and an inline secret key is never printed.
 */
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "dpool/config.hpp"

namespace dpool::detail {

/* Fills `config` from the map `node` of file `file`. Throws Error(kConfig) "file:line: curve.KEY:
 * what is wrong". */
void read_curve(const YAML::Node& node, const std::string& file, CurveBrokerConfig& config);
void read_curve(const YAML::Node& node, const std::string& file, CurvePeerConfig& config);

/* `curve:` and its map, an inline secret key redacted. */
void write_curve(YAML::Emitter& out, const CurveBrokerConfig& config);
void write_curve(YAML::Emitter& out, const CurvePeerConfig& config);

}  // namespace dpool::detail
