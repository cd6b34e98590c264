"""The words a case's status and its review are stored, searched and described in.

This is their one list: the case verdict, the records, the case searches, the pages and
the OpenAPI document's enums all take them from here.
"""

from __future__ import annotations

from typing import Literal, get_args

# The case verdict's status (``app.core.case_verdict``).
CaseStatus = Literal["malignant", "benign", "uncertain"]
CASE_STATUSES: tuple[CaseStatus, ...] = get_args(CaseStatus)

# Where a case's review stands: no review, reviewed, or its latest review signed off.
ReviewState = Literal["none", "reviewed", "signed_off"]
REVIEW_STATES: tuple[ReviewState, ...] = get_args(ReviewState)

# A review's decision on the case verdict.
ReviewDecision = Literal["agree", "override"]
REVIEW_DECISIONS: tuple[ReviewDecision, ...] = get_args(ReviewDecision)
