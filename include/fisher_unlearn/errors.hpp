// Typed exceptions thrown by fisher_unlearn. Every message says what was wrong and what to do.
// Every algorithm that changes a model gives the strong guarantee: when it throws, the model's
// parameters are exactly as they were (the update is computed first and committed last).
#pragma once

#include <stdexcept>
#include <string>

namespace fisher_unlearn {

/// Base class of every exception the library throws on its own account.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An argument has the wrong size, is out of its domain (damping <= 0, m = 0, ...) or is empty.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A vector that must be finite (gradient, parameters, step) contains NaN or Inf.
class NonFiniteError : public Error {
 public:
  using Error::Error;
};

/// The user's model broke a rule of its concept that the library can detect, for example gradient()
/// left entries of its output unwritten (the library fills the buffer with a marked NaN before each
/// call). A kind of InvalidArgument: the model is an argument.
class ModelContractError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

/// An object was used before it was ready (for example an estimator applied before finalize()).
class StateError : public Error {
 public:
  using Error::Error;
};

/// A file is missing, truncated, corrupt or of a foreign format.
class FileFormatError : public Error {
 public:
  using Error::Error;
};

/// Input/output failed (cannot open, write or rename a file).
class IoError : public Error {
 public:
  using Error::Error;
};

/// A numerical procedure could not produce a trustworthy answer (a factorisation failed, a step
/// exploded beyond its limit).
class NumericalError : public Error {
 public:
  using Error::Error;
};

/// A long call was cancelled through its Progress (progress.hpp): a CancelToken was triggered or the stop
/// callback returned true. Strong guarantee: the model is exactly as before the call.
class Cancelled : public Error {
 public:
  using Error::Error;
};

}  // namespace fisher_unlearn
