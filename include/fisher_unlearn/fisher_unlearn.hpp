// Umbrella header: every public component of fisher_unlearn.
#pragma once

#include "fisher_unlearn/concepts.hpp"
#include "fisher_unlearn/errors.hpp"
#include "fisher_unlearn/parameter_subset.hpp"
#include "fisher_unlearn/report.hpp"
#include "fisher_unlearn/types.hpp"
#include "fisher_unlearn/detail/model_ops.hpp"
#include "fisher_unlearn/fisher/collect.hpp"
#include "fisher_unlearn/fisher/diagonal.hpp"
#include "fisher_unlearn/fisher/woodbury.hpp"
#include "fisher_unlearn/models/logistic_regression.hpp"
#include "fisher_unlearn/models/classification.hpp"
#include "fisher_unlearn/models/mlp.hpp"
#include "fisher_unlearn/models/softmax_regression.hpp"
#include "fisher_unlearn/testing/check_gradient.hpp"
