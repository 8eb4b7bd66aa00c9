// case_studies data phase. Case A: Debian changelog entries with real maintainer trailers
// (scripts/prepare_changelogs.py), a seeded choice of people in roles (deleted for tuning, deleted and
// reported, kept, one-off, held out), tokenised into training sequences. Case B: a fortune passage
// repeated r times among changelog entries.
#pragma once

#include "forget_scope.hpp"
#include "options.hpp"
#include "unlearn_lm/util.hpp"

#include "fisher_unlearn/bpe_tokenizer.hpp"
#include "fisher_unlearn/models/llama.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>

namespace case_studies {

namespace fu = fisher_unlearn;
using unlearn_lm::fmt;
using unlearn_lm::now_seconds;
using Model = fu::models::Llama<float>;
using Sample = Model::Sample;
using fu::Token;
using json = nlohmann::json;

struct Entry {
  std::string package, version, name, email, date, text;
};

enum class Role { tuning, reported, kept, one_off, heldout };

inline std::string role_name(Role r) {
  switch (r) {
    case Role::tuning: return "deleted_tuning";
    case Role::reported: return "deleted_reported";
    case Role::kept: return "kept";
    case Role::one_off: return "one_off";
    case Role::heldout: return "heldout";
  }
  return "?";
}

struct Person {
  std::string name, email;
  Role role = Role::one_off;
  std::vector<std::size_t> entries;  ///< indices into CaseA::entries
  bool deleted() const { return role == Role::tuning || role == Role::reported; }
};

/// The case-A corpus: every selected entry once, its owner, and the tokenised sequences.
struct CaseA {
  std::vector<Entry> entries;          ///< the selected entries (training and held-out)
  std::vector<std::size_t> owner;      ///< person index of each entry
  std::vector<Person> people;
  std::vector<Sample> train;           ///< every entry of a non-held-out person, seeded order
  std::vector<std::size_t> train_entry;  ///< entry index of each train sequence
  std::vector<Sample> retain;          ///< train minus the deleted people's entries
  std::vector<Sample> forget;          ///< the deleted people's entries (tuning and reported), --forget-scope weights
  std::vector<std::size_t> forget_entry;  ///< entry index of each forget sample
  std::vector<Sample> heldout;         ///< the held-out people's entries
  std::vector<std::size_t> heldout_entry;
  std::size_t train_tokens = 0, retain_tokens = 0;
};

inline std::vector<Entry> read_entries(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw fu::IoError("cannot read changelog entries '" + path + "'; run scripts/prepare_changelogs.py first");
  std::vector<Entry> out;
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      const json j = json::parse(line);
      out.push_back({j.at("package"), j.at("version"), j.at("name"), j.at("email"), j.at("date"), j.at("text")});
    } catch (const json::exception& e) {
      throw fu::FileFormatError("'" + path + "' line " + std::to_string(n) + ": " + e.what() +
                                "; regenerate it with scripts/prepare_changelogs.py");
    }
  }
  if (out.empty()) throw fu::FileFormatError("'" + path + "' holds no entry; regenerate it with scripts/prepare_changelogs.py");
  return out;
}

inline Sample to_sample(const fu::BpeTokenizer& tok, const std::string& text, std::size_t context) {
  Sample s;
  s.tokens = tok.encode(text);
  if (s.tokens.size() > context + 1) s.tokens.resize(context + 1);
  if (s.tokens.size() < 2) throw fu::InvalidArgument("a training text tokenises to fewer than 2 tokens: '" + text + "'");
  return s;
}

/// Chooses the people (seeded) and builds the corpus. People whose name appears with two addresses,
/// or whose address appears with two names, are never chosen (each person has one real address).
inline CaseA build_case_a(const Options& o, const fu::BpeTokenizer& tok) {
  const std::vector<Entry> all = read_entries(o.entries);
  std::map<std::string, std::set<std::string>> emails_of, names_of;
  std::map<std::string, std::vector<std::size_t>> by_name;
  for (std::size_t i = 0; i < all.size(); ++i) {
    emails_of[all[i].name].insert(all[i].email);
    names_of[all[i].email].insert(all[i].name);
    by_name[all[i].name].push_back(i);
  }
  std::vector<std::string> frequent, other;
  for (const auto& [name, idx] : by_name) {
    if (emails_of[name].size() != 1 || names_of[*emails_of[name].begin()].size() != 1) continue;
    if (idx.size() > static_cast<std::size_t>(o.max_person_entries)) continue;
    // distinct (package, version) entries only
    std::set<std::string> keys;
    for (std::size_t i : idx) keys.insert(all[i].package + " " + all[i].version);
    (keys.size() >= static_cast<std::size_t>(o.entries_per_person) ? frequent : other).push_back(name);
  }
  std::mt19937_64 rng(o.seed * 0x9e3779b97f4a7c15ULL + 11);
  std::shuffle(frequent.begin(), frequent.end(), rng);
  std::shuffle(other.begin(), other.end(), rng);
  const std::size_t nf = static_cast<std::size_t>(o.tuning_people + o.reported_people + o.kept_people);
  const std::size_t no = static_cast<std::size_t>(o.one_off_people + o.heldout_people);
  if (frequent.size() < nf)
    throw fu::InvalidArgument("only " + std::to_string(frequent.size()) + " people have " + std::to_string(o.entries_per_person) +
                              " distinct entries (and at most --max-person-entries); ask for fewer tuning/reported/kept people");
  // Held-out and one-off people come from the remaining frequent people and the others together.
  std::vector<std::string> rest(frequent.begin() + static_cast<std::ptrdiff_t>(nf), frequent.end());
  rest.insert(rest.end(), other.begin(), other.end());
  std::shuffle(rest.begin(), rest.end(), rng);
  if (rest.size() < no)
    throw fu::InvalidArgument("only " + std::to_string(rest.size()) + " other people are available; ask for fewer one-off/held-out people");

  CaseA c;
  auto add_person = [&](const std::string& name, Role role, std::size_t count) {
    Person p;
    p.name = name;
    p.email = *emails_of[name].begin();
    p.role = role;
    std::vector<std::size_t> idx = by_name[name];
    std::shuffle(idx.begin(), idx.end(), rng);
    std::set<std::string> keys;
    for (std::size_t i : idx) {
      if (p.entries.size() == count) break;
      if (!keys.insert(all[i].package + " " + all[i].version).second) continue;
      p.entries.push_back(c.entries.size());
      c.entries.push_back(all[i]);
      c.owner.push_back(c.people.size());
    }
    c.people.push_back(std::move(p));
  };
  const auto per = static_cast<std::size_t>(o.entries_per_person);
  std::size_t k = 0;
  for (long long i = 0; i < o.tuning_people; ++i) add_person(frequent[k++], Role::tuning, per);
  for (long long i = 0; i < o.reported_people; ++i) add_person(frequent[k++], Role::reported, per);
  for (long long i = 0; i < o.kept_people; ++i) add_person(frequent[k++], Role::kept, per);
  k = 0;
  for (long long i = 0; i < o.one_off_people; ++i) add_person(rest[k++], Role::one_off, 1);
  for (long long i = 0; i < o.heldout_people; ++i) add_person(rest[k++], Role::heldout, 2);

  std::vector<std::size_t> order;
  for (std::size_t e = 0; e < c.entries.size(); ++e)
    if (c.people[c.owner[e]].role != Role::heldout) order.push_back(e);
  std::shuffle(order.begin(), order.end(), rng);
  const auto context = static_cast<std::size_t>(o.context);
  for (std::size_t e : order) {
    Sample s = to_sample(tok, c.entries[e].text, context);
    c.train_tokens += s.tokens.size() - 1;
    c.train.push_back(s);
    c.train_entry.push_back(e);
    if (c.people[c.owner[e]].deleted()) {
      const Entry& en = c.entries[e];
      c.forget.push_back(scoped_forget_sample(tok, std::move(s), en.text, en.name, en.email, o.forget_scope, en.package + " " + en.version));
      c.forget_entry.push_back(e);
    } else {
      c.retain_tokens += s.tokens.size() - 1;
      c.retain.push_back(std::move(s));
    }
  }
  for (std::size_t e = 0; e < c.entries.size(); ++e)
    if (c.people[c.owner[e]].role == Role::heldout) {
      c.heldout.push_back(to_sample(tok, c.entries[e].text, context));
      c.heldout_entry.push_back(e);
    }
  return c;
}

/// Case B: one passage (a fortune of at least `passage_tokens` tokens, seeded choice) and its corpus.
struct CaseB {
  std::string passage_text;
  std::vector<Token> passage;          ///< exactly passage_tokens tokens
  std::vector<Sample> train, retain, forget, heldout;
  std::size_t train_tokens = 0, retain_tokens = 0;
};

inline std::vector<std::string> read_fortunes(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw fu::IoError("cannot read the fortune file '" + path + "'; install the 'fortunes' package or pass --passage-file");
  std::vector<std::string> out;
  std::string line, cur;
  while (std::getline(in, line)) {
    if (line == "%") {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += line + "\n";
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace case_studies
