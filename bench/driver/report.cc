#include "bench/driver/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

namespace bench {
namespace {

Stats make_stats(std::vector<double> values) {
  Stats s;
  s.runs = values;
  std::sort(values.begin(), values.end());
  s.min = values.front();
  s.max = values.back();
  const std::size_t n = values.size();
  s.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return s;
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char code[8];
          std::snprintf(code, sizeof code, "\\u%04x", c);
          out += code;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '&') {
      out += "&amp;";
    } else {
      out += c;
    }
  }
  return out;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char text[40];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

std::string pad(const std::string& text, std::size_t width) {
  // Width in characters: count UTF-8 lead bytes only.
  std::size_t chars = 0;
  for (unsigned char c : text) chars += (c & 0xC0) != 0x80;
  return chars >= width ? text + " " : text + std::string(width - chars, ' ');
}

std::string cell(const std::optional<Stats>& stats) {
  if (!stats) return "-";
  if (stats->runs.size() == 1) return format_number(stats->median);
  return format_number(stats->median) + " (" + format_number(stats->min) + "-" +
         format_number(stats->max) + ")";
}

std::string ratio_text(std::optional<double> ratio) {
  if (!ratio) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", *ratio);
  return text;
}

// Whether greenrt is better than the peer, by the row's direction.
bool greenrt_wins(const Row& row, double ratio) {
  return row.higher_better ? ratio > 1.0 : ratio < 1.0;
}

bool is_scaling(const Row& row) {
  return row.name.find('@') != std::string::npos;
}

}  // namespace

std::string format_number(double value) {
  char text[32];
  const double a = std::fabs(value);
  if (a >= 1e6) {
    std::snprintf(text, sizeof text, "%.3gM", value / 1e6);
  } else if (a >= 1e4) {
    std::snprintf(text, sizeof text, "%.3gk", value / 1e3);
  } else if (a >= 1000) {
    std::snprintf(text, sizeof text, "%.0f", value);
  } else {
    std::snprintf(text, sizeof text, "%.3g", value);
  }
  return text;
}

std::vector<Row> summarise(const std::vector<WorkloadRuns>& results) {
  std::vector<Row> rows;
  for (const WorkloadRuns& result : results) {
    const Workload& w = result.workload;
    std::set<std::string> metric_keys = {"check"};
    for (const Metric& m : w.metrics) metric_keys.insert(m.key);
    for (std::size_t mi = 0; mi < w.metrics.size(); ++mi) {
      const Metric& m = w.metrics[mi];
      Row row;
      row.name = m.name;
      row.workload = w.name;
      row.unit = m.unit;
      row.higher_better = m.higher_better;
      row.workers = w.workers;
      row.scaling_group = mi == 0 ? w.scaling_group : "";
      row.target = m.target;
      for (Impl impl : kImpls) {
        const int i = static_cast<int>(impl);
        const ImplRuns& runs = result.impls[i];
        if (!w.available[i]) {
          row.notes[i] = w.missing_note[i];
          continue;
        }
        std::vector<double> values;
        std::map<std::string, std::vector<double>> extras;
        for (const auto& run : runs.runs) {
          auto it = run.find(m.key);
          if (it != run.end()) values.push_back(it->second);
          if (mi != 0) continue;
          for (const auto& [key, value] : run) {
            if (!metric_keys.count(key)) extras[key].push_back(value);
          }
        }
        if (!runs.errors.empty()) {
          row.notes[i] = std::to_string(runs.errors.size()) +
                         " run(s) failed: " + runs.errors.front();
        }
        if (values.empty()) {
          if (row.notes[i].empty()) row.notes[i] = "no result";
          continue;
        }
        row.stats[i] = make_stats(values);
        for (auto& [key, list] : extras) {
          row.extras[i][key] = make_stats(list).median;
        }
      }
      const auto& g = row.stats[static_cast<int>(Impl::kGreenrt)];
      const auto& go = row.stats[static_cast<int>(Impl::kGo)];
      const auto& bf = row.stats[static_cast<int>(Impl::kBoostFiber)];
      if (g && go && go->median != 0) row.ratio_go = g->median / go->median;
      if (g && bf && bf->median != 0) {
        row.ratio_boost_fiber = g->median / bf->median;
      }
      rows.push_back(std::move(row));
    }
  }
  // The main runs of a scaling group are its @Nw point: list them again
  // under that name, then every scaling row at the end, by group.
  std::vector<Row> scaling;
  for (const Row& row : rows) {
    if (row.scaling_group.empty()) continue;
    Row copy = row;
    if (!is_scaling(row)) {
      copy.name = row.name + "@" + std::to_string(row.workers) + "w";
      copy.target.reset();
    }
    scaling.push_back(std::move(copy));
  }
  rows.erase(std::remove_if(rows.begin(), rows.end(), is_scaling), rows.end());
  std::stable_sort(scaling.begin(), scaling.end(),
                   [](const Row& a, const Row& b) {
                     if (a.scaling_group != b.scaling_group) {
                       return a.scaling_group < b.scaling_group;
                     }
                     return a.workers < b.workers;
                   });
  rows.insert(rows.end(), scaling.begin(), scaling.end());
  return rows;
}

std::string format_table(const std::vector<Row>& rows, const RunInfo& info) {
  std::ostringstream out;
  out << "greenrt vs Go (" << info.go_version << ") vs Boost.Fiber ("
      << info.boost_version << "), " << info.date << ", " << info.cores
      << " cores, " << info.workers << " workers, " << info.mode << " mode, "
      << info.runs << (info.runs == 1 ? " run" : " runs") << " after "
      << info.warmup << " discarded warm-up round"
      << (info.warmup == 1 ? "" : "s") << "; median (min-max)\n";
  char load[160];
  std::snprintf(load, sizeof load,
                "load average %.2f before the run (%s), %.2f after "
                "(the benchmarks' own)\n\n",
                info.load_before,
                info.load_before > 0.5 ? "other work was running: expect noise"
                                       : "a quiet machine",
                info.load_after);
  out << load;
  out << pad("workload", 25) << pad("unit", 20) << pad("better", 7)
      << pad("greenrt", 22) << pad("Go", 22) << pad("Boost.Fiber", 22)
      << pad("gr/Go", 7) << pad("target", 12) << "gr/BF\n";
  out << std::string(25 + 20 + 7 + 22 * 3 + 7 + 12 + 6, '-') << "\n";
  std::vector<std::string> notes;
  for (const Row& row : rows) {
    std::string target = "";
    if (row.target) {
      char text[32];
      std::snprintf(text, sizeof text, "%s%.1f", row.target->op.c_str(),
                    row.target->value);
      target = text;
      if (row.ratio_go) {
        target += row.target->met(*row.ratio_go) ? " met" : " MISSED";
      }
    }
    std::string bf = ratio_text(row.ratio_boost_fiber);
    if (row.ratio_boost_fiber) {
      bf += greenrt_wins(row, *row.ratio_boost_fiber) ? " win" : " LOSS";
    }
    out << pad(row.name, 25) << pad(row.unit, 20)
        << pad(row.higher_better ? "higher" : "lower", 7);
    for (Impl impl : kImpls) {
      out << pad(cell(row.stats[static_cast<int>(impl)]), 22);
    }
    out << pad(ratio_text(row.ratio_go), 7) << pad(target, 12) << bf << "\n";
    for (Impl impl : kImpls) {
      const std::string& note = row.notes[static_cast<int>(impl)];
      if (!note.empty() && row.name == row.workload) {
        notes.push_back(row.name + ", " + impl_title(impl) + ": " + note);
      }
    }
  }
  if (!notes.empty()) {
    out << "\n";
    for (const std::string& note : notes) out << "  * " << note << "\n";
  }
  return out.str();
}

std::string format_json(const std::vector<Row>& rows, const RunInfo& info) {
  std::ostringstream out;
  out << "{\n  \"date\": \"" << json_escape(info.date) << "\",\n"
      << "  \"cores\": " << info.cores << ",\n"
      << "  \"workers\": " << info.workers << ",\n"
      << "  \"mode\": \"" << info.mode << "\",\n"
      << "  \"runs\": " << info.runs << ",\n"
      << "  \"warmup_runs\": " << info.warmup << ",\n"
      << "  \"load_average\": {\"before\": " << json_number(info.load_before)
      << ", \"after\": " << json_number(info.load_after) << "},\n"
      << "  \"go_version\": \"" << json_escape(info.go_version) << "\",\n"
      << "  \"boost_version\": \"" << json_escape(info.boost_version) << "\",\n"
      << "  \"workloads\": [";
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const Row& row = rows[r];
    out << (r ? "," : "") << "\n    {\"name\": \"" << json_escape(row.name)
        << "\", \"unit\": \"" << json_escape(row.unit) << "\", \"better\": \""
        << (row.higher_better ? "higher" : "lower")
        << "\", \"workers\": " << row.workers;
    for (Impl impl : kImpls) {
      const int i = static_cast<int>(impl);
      out << ",\n     \"" << impl_key(impl) << "\": ";
      const auto& s = row.stats[i];
      if (!s) {
        out << "null";
        continue;
      }
      out << "{\"median\": " << json_number(s->median)
          << ", \"min\": " << json_number(s->min)
          << ", \"max\": " << json_number(s->max) << ", \"runs\": [";
      for (std::size_t k = 0; k < s->runs.size(); ++k) {
        out << (k ? ", " : "") << json_number(s->runs[k]);
      }
      out << "]";
      if (!row.extras[i].empty()) {
        out << ", \"extra\": {";
        bool first = true;
        for (const auto& [key, value] : row.extras[i]) {
          out << (first ? "" : ", ") << "\"" << json_escape(key)
              << "\": " << json_number(value);
          first = false;
        }
        out << "}";
      }
      out << "}";
    }
    out << ",\n     \"ratio_go\": "
        << (row.ratio_go ? json_number(*row.ratio_go) : "null")
        << ", \"ratio_boost_fiber\": "
        << (row.ratio_boost_fiber ? json_number(*row.ratio_boost_fiber)
                                  : "null");
    if (row.target) {
      out << ",\n     \"target_go\": {\"op\": \"" << row.target->op
          << "\", \"value\": " << json_number(row.target->value)
          << ", \"met\": "
          << (row.ratio_go ? (row.target->met(*row.ratio_go) ? "true" : "false")
                           : "null")
          << "}";
    }
    bool any_note = false;
    for (Impl impl : kImpls) {
      any_note = any_note || !row.notes[static_cast<int>(impl)].empty();
    }
    if (any_note) {
      out << ",\n     \"notes\": {";
      bool first = true;
      for (Impl impl : kImpls) {
        const std::string& note = row.notes[static_cast<int>(impl)];
        if (note.empty()) continue;
        out << (first ? "" : ", ") << "\"" << impl_key(impl) << "\": \""
            << json_escape(note) << "\"";
        first = false;
      }
      out << "}";
    }
    out << "}";
  }
  out << "\n  ]\n}\n";
  return out.str();
}

std::string format_svg(const std::vector<Row>& rows, const RunInfo& info) {
  // Part 1: one line per row (scaling rows excepted), a bar per peer on a
  // log scale of "how many times better greenrt is" (the ratio itself, or
  // its inverse where lower is better), labelled with the raw ratio.
  std::vector<const Row*> bars;
  for (const Row& row : rows) {
    if (!is_scaling(row) && (row.ratio_go || row.ratio_boost_fiber)) {
      bars.push_back(&row);
    }
  }
  std::vector<std::string> groups;
  for (const Row& row : rows) {
    if (is_scaling(row) && std::find(groups.begin(), groups.end(),
                                     row.scaling_group) == groups.end()) {
      groups.push_back(row.scaling_group);
    }
  }
  const int width = 960, label_w = 190, plot_w = 600, line_h = 26;
  const int top = 70;
  const int bars_h = static_cast<int>(bars.size()) * line_h;
  const int scaling_top = top + bars_h + 80;
  const int chart_h = 200;
  const int height = groups.empty() ? scaling_top : scaling_top + chart_h + 90;
  const double log_span = std::log(8.0);  // 1/8x .. 8x
  auto x_of = [&](double advantage) {
    const double clamped = std::clamp(advantage, 1 / 8.0, 8.0);
    return label_w + plot_w / 2.0 + std::log(clamped) / log_span * plot_w / 2;
  };
  const char* colors[kImplCount] = {"#2a9d4b", "#1f6fb4", "#e07b1a"};
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width
    << "\" height=\"" << height << "\" font-family=\"sans-serif\" "
    << "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
    << "fill=\"white\"/>\n";
  s << "<text x=\"10\" y=\"22\" font-size=\"16\" font-weight=\"bold\">"
    << "greenrt against Go and Boost.Fiber</text>\n";
  s << "<text x=\"10\" y=\"40\">" << xml_escape(info.date) << ", " << info.cores
    << " cores, " << info.workers << " workers, " << info.mode
    << " mode, median of " << info.runs
    << " runs. Bars right of the middle: greenrt better. Labels: "
    << "greenrt / peer (lower or higher is better as marked).</text>\n";
  for (int p = 0; p < 2; ++p) {
    s << "<rect x=\"" << 600 + p * 150 << "\" y=\"12\" width=\"12\" "
      << "height=\"12\" fill=\"" << colors[p + 1] << "\"/><text x=\""
      << 616 + p * 150 << "\" y=\"22\">vs " << (p == 0 ? "Go" : "Boost.Fiber")
      << "</text>\n";
  }
  for (double tick : {1 / 8.0, 1 / 4.0, 1 / 2.0, 1.0, 2.0, 4.0, 8.0}) {
    const double x = x_of(tick);
    s << "<line x1=\"" << x << "\" y1=\"" << top - 8 << "\" x2=\"" << x
      << "\" y2=\"" << top + bars_h << "\" stroke=\""
      << (tick == 1.0 ? "#333" : "#ddd") << "\"/>\n";
    char label[32];
    if (tick >= 1) {
      std::snprintf(label, sizeof label, "%gx better", tick);
    } else {
      std::snprintf(label, sizeof label, "%gx worse", 1 / tick);
    }
    s << "<text x=\"" << x << "\" y=\"" << top - 12
      << "\" text-anchor=\"middle\" fill=\"#555\">"
      << (tick == 1.0 ? "even" : label) << "</text>\n";
  }
  for (std::size_t b = 0; b < bars.size(); ++b) {
    const Row& row = *bars[b];
    const int y = top + static_cast<int>(b) * line_h;
    s << "<text x=\"" << label_w - 8 << "\" y=\"" << y + 16
      << "\" text-anchor=\"end\">" << xml_escape(row.name) << " ("
      << (row.higher_better ? "higher" : "lower") << ")</text>\n";
    const std::optional<double> ratios[2] = {row.ratio_go,
                                             row.ratio_boost_fiber};
    for (int p = 0; p < 2; ++p) {
      if (!ratios[p]) continue;
      const double ratio = *ratios[p];
      const double advantage = row.higher_better ? ratio : 1 / ratio;
      const double x0 = x_of(1.0), x1 = x_of(advantage);
      const int bar_y = y + 3 + p * 10;
      s << "<rect x=\"" << std::min(x0, x1) << "\" y=\"" << bar_y
        << "\" width=\"" << std::max(1.0, std::fabs(x1 - x0))
        << "\" height=\"9\" fill=\"" << colors[p + 1] << "\"/>\n";
      char label[48];
      std::snprintf(label, sizeof label, "%.2f vs %s", ratio,
                    p == 0 ? "Go" : "Boost.Fiber");
      // Right of the longer end, so it never covers the row's name.
      s << "<text x=\"" << std::max(x0, x1) + 4 << "\" y=\"" << bar_y + 9
        << "\" font-size=\"10\">" << label << "</text>\n";
    }
  }
  // Part 2: the scaling runs, one small chart per group: the metric
  // against the worker count, a line per runtime.
  if (!groups.empty()) {
    s << "<text x=\"10\" y=\"" << scaling_top - 30
      << "\" font-size=\"14\" font-weight=\"bold\">Scaling with workers "
      << "(lower is better)</text>\n";
    const int chart_w = 260, gap = 60;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      std::vector<const Row*> points;
      for (const Row& row : rows) {
        if (is_scaling(row) && row.scaling_group == groups[g]) {
          points.push_back(&row);
        }
      }
      double y_max = 0;
      int w_max = 1;
      for (const Row* row : points) {
        w_max = std::max(w_max, row->workers);
        for (const auto& st : row->stats) {
          if (st) y_max = std::max(y_max, st->median);
        }
      }
      if (y_max <= 0) y_max = 1;
      y_max *= 1.15;
      const int x0 = 70 + static_cast<int>(g) * (chart_w + gap);
      const int y0 = scaling_top + chart_h;
      auto px = [&](int workers) {
        return w_max == 1
                   ? x0 + chart_w / 2.0
                   : x0 + 20 + (workers - 1) * (chart_w - 40.0) / (w_max - 1);
      };
      auto py = [&](double v) { return y0 - v / y_max * chart_h; };
      s << "<text x=\"" << x0 + chart_w / 2 << "\" y=\"" << scaling_top - 8
        << "\" text-anchor=\"middle\" font-weight=\"bold\">"
        << xml_escape(groups[g]) << " ("
        << xml_escape(points.empty() ? "" : points.front()->unit)
        << ")</text>\n";
      s << "<line x1=\"" << x0 << "\" y1=\"" << y0 << "\" x2=\"" << x0 + chart_w
        << "\" y2=\"" << y0 << "\" stroke=\"#333\"/>\n"
        << "<line x1=\"" << x0 << "\" y1=\"" << y0 << "\" x2=\"" << x0
        << "\" y2=\"" << scaling_top << "\" stroke=\"#333\"/>\n";
      for (int k = 0; k <= 4; ++k) {
        const double v = y_max * k / 4;
        s << "<text x=\"" << x0 - 4 << "\" y=\"" << py(v) + 4
          << "\" text-anchor=\"end\" font-size=\"10\">" << format_number(v)
          << "</text>\n";
      }
      for (const Row* row : points) {
        s << "<text x=\"" << px(row->workers) << "\" y=\"" << y0 + 14
          << "\" text-anchor=\"middle\" font-size=\"10\">" << row->workers
          << "w</text>\n";
      }
      for (Impl impl : kImpls) {
        const int i = static_cast<int>(impl);
        std::string path;
        for (const Row* row : points) {
          if (!row->stats[i]) continue;
          char point[64];
          std::snprintf(point, sizeof point, "%s%.1f,%.1f",
                        path.empty() ? "M" : " L", px(row->workers),
                        py(row->stats[i]->median));
          path += point;
          s << "<circle cx=\"" << px(row->workers) << "\" cy=\""
            << py(row->stats[i]->median) << "\" r=\"3\" fill=\"" << colors[i]
            << "\"/>\n";
        }
        if (!path.empty()) {
          s << "<path d=\"" << path << "\" fill=\"none\" stroke=\"" << colors[i]
            << "\" stroke-width=\"2\"/>\n";
        }
      }
    }
    const int legend_y = scaling_top + chart_h + 40;
    for (Impl impl : kImpls) {
      const int i = static_cast<int>(impl);
      s << "<rect x=\"" << 70 + i * 140 << "\" y=\"" << legend_y - 10
        << "\" width=\"12\" height=\"12\" fill=\"" << colors[i] << "\"/>"
        << "<text x=\"" << 88 + i * 140 << "\" y=\"" << legend_y << "\">"
        << impl_title(impl) << "</text>\n";
    }
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace bench
