"""The mean_pool backbone meets clue_fw's backbone contract (and every objective and head)."""

import clue_mean_pool

from clue_fw.testing import contract_test

test_contract = contract_test(clue_mean_pool)
