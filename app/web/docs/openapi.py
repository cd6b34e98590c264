"""The JSON API described in OpenAPI 3.1, served at /api/v1/openapi.json and as /api/docs."""

from __future__ import annotations

from typing import Any, get_args

from app.core.case_words import CASE_STATUSES, REVIEW_DECISIONS, REVIEW_STATES
from app.core.classes import CLASS_IDS
from app.core.prediction import CellStatus, Status
from app.records.cases import FINDINGS

_CLASS = {"type": "string", "enum": list(CLASS_IDS)}
# The status and review words, from their one list in the core.
_CASE_STATUS = {"type": "string", "enum": list(CASE_STATUSES)}
_REVIEW_STATE = {"type": "string", "enum": list(REVIEW_STATES)}
_DECISION = {"type": "string", "enum": list(REVIEW_DECISIONS)}
_CELL_STATUS = {"type": "string", "enum": list(get_args(CellStatus))}
# A case's photograph: a single prediction's status, or refused (``field_group``).
_IMAGE_STATUS = {"type": "string", "enum": [*get_args(Status), "refused"]}
_PROBABILITIES = {
    "type": "object",
    "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in CLASS_IDS},
    "required": list(CLASS_IDS),
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "reason": {"type": "string"},
                "fix": {"type": "string"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
_SUBTYPE = {
    "type": ["object", "null"],
    "description": "A malignant answer's subtype, as what it is: a pattern seen in morphology "
    "(`basis` is morphological_pattern); the diagnosis and subtype need flow cytometry. "
    "null for a benign or unanswered result.",
    "properties": {
        "class": _CLASS,
        "label": {"type": "string"},
        "basis": {"type": "string", "enum": ["morphological_pattern"]},
        "note": {"type": "string"},
    },
}
_CELL = {
    "type": "object",
    "description": "One leukocyte a cell model read. `box` is [x, y, width, height] in the "
    "uploaded photograph's pixels; `class` is the cell's most likely pattern; `status` is "
    "uncertain when that class has less than the cell rule's confidence; `attention` is the "
    "cell's weight in the field's answer.",
    "properties": {
        "box": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
        "class": _CLASS,
        "label": {"type": "string"},
        "probabilities": _PROBABILITIES,
        "attention": {"type": "number", "minimum": 0, "maximum": 1},
        "status": _CELL_STATUS,
    },
    "required": ["box", "class", "probabilities", "status"],
}
_CELL_COUNTS = {
    "type": "object",
    "description": "Leukocytes per most likely class: the field's differential.",
    "properties": {c: {"type": "integer", "minimum": 0} for c in CLASS_IDS},
    "required": list(CLASS_IDS),
}
_PREDICTION = {
    "type": "object",
    "description": "One image's answer. `status` is benign, malignant, uncertain (the class "
    "is then only the most likely one) or out_of_distribution (do not rely on it). A model "
    "whose `unit` is cell also gives `cells`, `cell_counts` and `excluded_cells`.",
    "properties": {
        "class": _CLASS,
        "status": {"type": "string", "enum": list(get_args(Status))},
        "verdict": {"type": "string"},
        "subtype": _SUBTYPE,
        "confidence": {"type": "number"},
        "probabilities": _PROBABILITIES,
        "malignant_probability": {
            "type": "number",
            "description": "The three malignant classes' probabilities summed.",
        },
        "leans_malignant": {
            "type": "boolean",
            "description": "The malignant classes together hold at least the benign one, "
            "even where benign is the most likely single class: a case rule reads such an "
            "uncertain field as malignant evidence.",
        },
        "out_of_distribution": {"type": ["boolean", "null"]},
        "uncertain": {"type": "boolean"},
        "model": {"type": "object"},
        "timings_ms": {"type": "object"},
        "scale": {"type": ["object", "null"]},
        "unit": {"type": "string", "enum": ["field", "cell"]},
        "cells": {"type": "array", "items": _CELL},
        "cell_counts": _CELL_COUNTS,
        "excluded_cells": {
            "type": "object",
            "description": "Objects left out, by reason: border, scale_bar, too_small, clump.",
            "additionalProperties": {"type": "integer"},
        },
        "um_per_px": {"type": "number", "description": "Micrometres per uploaded pixel."},
        "segmentation": {
            "type": "object",
            "description": "With `explain`: the segmented leukocytes (count, boxes, areas).",
        },
    },
    "required": ["class", "status", "probabilities", "model", "unit"],
}
_CASE_CELL_COUNTS = {
    "type": "object",
    "description": "A cell model's differential: per class, the model's count (`model`) and "
    "the count once the reviewer's classes replace the model's (`reviewed`); `cells` in all "
    "and `reviewed_cells` a reviewer classified.",
    "properties": {
        "model": _CELL_COUNTS,
        "reviewed": _CELL_COUNTS,
        "cells": {"type": "integer", "minimum": 0},
        "reviewed_cells": {"type": "integer", "minimum": 0},
    },
    "required": ["model", "reviewed", "cells", "reviewed_cells"],
}
# [x, y, width, height] in the uploaded photograph's pixels.
_BOX = {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4}
_CASE_CELL = {
    "type": "object",
    "description": "A leukocyte of a case's photograph, as the cell model read it (`class` "
    "is the model's, as in a single prediction's cells), and the class a reviewer gave it "
    "(`reviewed_class`, null until one did; the model's own class when confirmed). `id` is "
    "the cell to reclassify.",
    "properties": {
        "id": {"type": "integer"},
        "index": {"type": "integer", "minimum": 1},
        "box": _BOX,
        "class": _CLASS,
        "label": {"type": "string"},
        "probabilities": _PROBABILITIES,
        "attention": {"type": "number", "minimum": 0, "maximum": 1},
        "status": _CELL_STATUS,
        "reviewed_class": {"anyOf": [_CLASS, {"type": "null"}]},
        "reviewed_by": {"type": ["string", "null"]},
        "reviewed_at": {"type": ["string", "null"], "format": "date-time"},
        "image_url": {"type": "string", "description": "The crop, as the gallery shows it"},
    },
    "required": ["id", "box", "class", "probabilities", "status", "reviewed_class"],
}
_RECLASSIFY_BODY = {
    "type": "object",
    "properties": {
        "cell": {"type": "integer", "description": "The cell's `id` in `images[].cells`"},
        "class": _CLASS,
    },
    "required": ["cell", "class"],
}
_IMAGE = {
    "type": "object",
    "description": "One photograph of a case: its result, or the reason it was not analysed.",
    "properties": {
        "position": {"type": "integer"},
        "class": {"anyOf": [_CLASS, {"type": "null"}]},
        "status": _IMAGE_STATUS,
        "probabilities": {"anyOf": [_PROBABILITIES, {"type": "null"}]},
        "error": {"type": ["object", "null"]},
        "filename": {"type": "string"},
        "sha256": {"type": "string"},
        "stored": {"type": "boolean"},
        "cells": {
            "type": "array",
            "items": _CASE_CELL,
            "description": "A cell model's photograph only: each leukocyte it read.",
        },
        "cell_counts": _CASE_CELL_COUNTS,
    },
    "required": ["position", "class", "status", "probabilities", "error", "sha256"],
}
# A reviewer's verdict: one of the four classes, or one of the findings beyond them.
_REVIEW_VERDICT = {
    "type": "string",
    "enum": [*CLASS_IDS, *FINDINGS],
    "description": "A class, or a finding: "
    + "; ".join(f"`{k}`: {label}" for k, label in FINDINGS.items()),
}
_UPLOAD_STATE = {
    "type": "object",
    "description": "An upload that sent the photographs one by one and stopped part-way "
    "has `complete` false; its sign-off needs `acknowledge_incomplete`.",
    "properties": {
        "expected": {"type": ["integer", "null"]},
        "received": {"type": "integer"},
        "complete": {"type": "boolean"},
    },
    "required": ["expected", "received", "complete"],
}
_REVIEW = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "reviewer": {"type": ["string", "null"]},
        "decision": {
            **_DECISION,
            "description": "An override that names the model's own verdict is recorded as agree.",
        },
        "class_id": _REVIEW_VERDICT,
        "kind": {"type": "string", "enum": ["class", "finding"]},
        "finding": {"type": ["string", "null"], "description": "The words of other_finding"},
        "label": {"type": "string"},
        "comment": {"type": "string"},
        "signed_off": {"type": "boolean"},
        "microscope_confirmation": {
            "type": ["string", "null"],
            "description": "What the reviewer saw at the microscope, when that stood in "
            "for opening the flagged photographs",
        },
        "acknowledged_incomplete": {"type": "boolean"},
        "supersedes": {"type": ["integer", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "decision", "class_id", "kind", "signed_off"],
}
_CASE_SUMMARY = {
    "type": "object",
    "description": "A case in a list, without its images.",
    "properties": {
        "id": {"type": "string"},
        "reference": {"type": "string"},
        "class": {"type": ["string", "null"]},
        "status": _CASE_STATUS,
        "review_state": _REVIEW_STATE,
        "images": {"type": "integer"},
        "upload": _UPLOAD_STATE,
        "created_at": {"type": "string", "format": "date-time"},
        "model": {"type": "object"},
        "url": {"type": "string"},
    },
    "required": ["id", "reference", "status", "review_state", "images", "upload"],
}
_KNOWN_FAILURE = {
    "type": "object",
    "description": "A confusion the model is known to make: `count` of the `of` images of "
    "`true_class` in `split` were called `called`; `summary` says it in words.",
    "properties": {
        "true_class": _CLASS,
        "called": _CLASS,
        "count": {"type": "integer", "minimum": 0},
        "of": {"type": "integer", "minimum": 0},
        "split": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["true_class", "called", "count", "of", "split", "summary"],
}
_INTENDED_USE = {
    "type": ["object", "null"],
    "description": "What the model is for, what it must not be used for (other stains, bone "
    "marrow, other laboratories), where it is known to fail (counted on the test split) and "
    "where its training photographs came from. null on a card written before cards stated it.",
    "properties": {
        "purpose": {"type": "string"},
        "out_of_scope": {"type": "array", "items": {"type": "string"}},
        "known_failures": {"type": "array", "items": _KNOWN_FAILURE},
        "data": {
            "type": "object",
            "properties": {
                "source": {"type": "string"},
                "data_set": {"type": "string"},
                "doi": {"type": "string"},
                "patients": {"type": "integer"},
                "images": {"type": "integer"},
                "labels": {"type": "string"},
                "held_back": {"type": "string"},
                "split": {"type": "string"},
            },
            "required": ["source", "data_set", "doi", "patients", "labels"],
        },
    },
    "required": ["purpose", "out_of_scope", "known_failures", "data"],
}
_MODEL = {
    "type": "object",
    "description": "A served model's card (`models/<name>.json`) without its per-epoch "
    "training history.",
    "properties": {
        "name": {"type": "string"},
        "display_name": {"type": "string"},
        "architecture": {"type": "string"},
        "description": {"type": "string"},
        "version": {"type": "string"},
        "input_size": {"type": "integer"},
        "unit": {
            "type": "string",
            "enum": ["field", "cell"],
            "description": "field: the model reads the whole photograph; cell: each "
            "leukocyte, pooled into the field's answer.",
        },
        "views": {"type": "integer", "enum": [1, 8]},
        "test_metrics": {"type": ["object", "null"]},
        "patient_blocks": {
            "type": ["object", "null"],
            "description": "Figures on patients the model was not trained on: k-fold "
            "cross-validation over blocks of neighbouring files (`method` says how); each "
            "figure's 95% block-bootstrap interval under `intervals`, the accuracy's also "
            "as `ci95`.",
            "properties": {
                "folds": {"type": "integer"},
                "accuracy": {"type": "number"},
                "benign_recall": {"type": "number"},
                "malignant_recall": {"type": "number"},
                "macro_f1": {"type": "number"},
                "ci95": {"type": "array", "items": {"type": "number"}},
                "intervals": {"type": "object"},
                "n_fields": {"type": "integer"},
                "method": {"type": "string"},
            },
        },
        "calibration": {"type": "object"},
        "intended_use": _INTENDED_USE,
    },
    "required": [
        "name",
        "display_name",
        "version",
        "input_size",
        "unit",
        "views",
        "intended_use",
    ],
}
_MODEL_LIST = {
    "type": "object",
    "properties": {
        "default": {"type": "string"},
        "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
    },
    "required": ["default", "models"],
}
_CASE_LIST = {
    "type": "object",
    "properties": {
        "cases": {"type": "array", "items": {"$ref": "#/components/schemas/CaseSummary"}},
        "total": {"type": "integer"},
        "page": {"type": "integer"},
        "per_page": {"type": "integer"},
    },
    "required": ["cases", "total", "page", "per_page"],
}
_REVIEW_BODY = {
    "type": "object",
    "description": "A sign-off (`sign_off` true, and every correction) is refused with 422 "
    "`fields_not_opened` until the token's user has opened, in the pages, every photograph "
    "the case verdict rests on as malignant or uncertain (`evidence.review_fields`), unless "
    "`microscope_confirmation` says what was seen at the microscope; and with 422 "
    "`case_incomplete` when the upload stopped part-way, unless `acknowledge_incomplete`.",
    "properties": {
        "decision": _DECISION,
        "class": _REVIEW_VERDICT,
        "finding": {
            "type": "string",
            "maxLength": 500,
            "description": "Required with other_finding, refused with any other verdict",
        },
        "comment": {"type": "string", "maxLength": 2000},
        "sign_off": {"type": "boolean"},
        "microscope_confirmation": {"type": "string", "minLength": 10, "maxLength": 500},
        "acknowledge_incomplete": {"type": "boolean"},
        "corrects": {
            "type": "integer",
            "description": "On a signed-off case: the id of the sign-off this correction replaces",
        },
    },
    "required": ["decision"],
}
_CASE = {
    "type": "object",
    "description": "A case, judged by a screening rule: one confidently malignant photograph "
    "makes it malignant (`evidence.malignant_fields` lists them). `class` is the subtype "
    "pattern of a malignant case, benign for a benign one, and what the evidence leans to "
    "when `status` is uncertain.",
    "properties": {
        "id": {"type": "string"},
        "reference": {"type": "string"},
        "class": {"anyOf": [_CLASS, {"type": "null"}]},
        "status": _CASE_STATUS,
        "headline": {"type": "string"},
        "subtype": _SUBTYPE,
        "reason": {"type": ["string", "null"]},
        "evidence": {
            "type": "object",
            "properties": {
                "escalated": {"type": "boolean"},
                "malignant_fields": {"type": "array", "items": {"type": "integer"}},
                "malignant_share": {"type": "number"},
                "weak_malignant_fields": {"type": "array", "items": {"type": "integer"}},
                "uncertain_fields": {"type": "array", "items": {"type": "integer"}},
                "uncertain_malignant_fields": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "Uncertain fields that lean malignant: their malignant "
                    "classes together hold at least their benign probability.",
                },
                "review_fields": {"type": "array", "items": {"type": "integer"}},
                "subtype_votes": {"type": "object"},
                "subtype_disagreement": {"type": "boolean"},
                "mostly_uncertain": {"type": "boolean"},
                "cell_counts": {
                    "type": "object",
                    "description": "A cell model's leukocytes of the answered fields by "
                    "class (reviewed classes where a reviewer changed them); empty for a "
                    "model that reads whole fields.",
                    "additionalProperties": {"type": "integer"},
                },
                "blast_cells": {"type": "integer"},
                "blast_share": {"type": "number"},
                "findings": {"type": "array", "items": {"type": "string"}},
            },
        },
        "images": {"type": "array", "items": {"$ref": "#/components/schemas/CaseImage"}},
        "cell_counts": {
            "anyOf": [_CASE_CELL_COUNTS, {"type": "null"}],
            "description": "A cell model's differential of every photograph's leukocytes, "
            "before and after review; null for a model that reads whole fields.",
        },
        "reviews": {"type": "array", "items": {"$ref": "#/components/schemas/Review"}},
        "signed_off": {"type": "boolean"},
        "upload": {"type": "object"},
        "model": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "reference", "class", "status", "images", "reviews", "signed_off"],
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """The listed error answers, and the 401 and 403 every operation can give."""
    return {
        str(s): {"description": "An error with a stable code", "content": _json("Error")}
        for s in (*statuses, 401, 403)
    }


_CASE_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "reference": {"type": "string", "maxLength": 64},
                "note": {"type": "string"},
                "model": {"type": "string"},
                "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
            },
            "required": ["images"],
        }
    }
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of /api/v1."""
    search = [
        {"name": n, "in": "query", "required": False, "schema": schema}
        for n, schema in (
            ("reference", {"type": "string"}),
            ("from", {"type": "string", "format": "date"}),
            ("to", {"type": "string", "format": "date"}),
            ("status", _CASE_STATUS),
            ("review", _REVIEW_STATE),
            ("page", {"type": "integer", "minimum": 1}),
        )
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "B-ALL smear classifier API",
            "version": "1",
            "description": "Research decision support, not a diagnosis. Every operation "
            "needs an API token (`flask tokens create USERNAME`) sent as "
            "`Authorization: Bearer <token>`; what it may do is its user's role's.",
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/api/v1/predict": {
                "post": {
                    "summary": "Classify one image, or several (answered with a list)",
                    "operationId": "predict",
                    "tags": ["predictions"],
                    "parameters": [
                        {"name": "explain", "in": "query", "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "image": {"type": "string", "format": "binary"},
                                        "model": {"type": "string"},
                                    },
                                    "required": ["image"],
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The prediction, or a list of them",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Prediction"},
                                            {"type": "array"},
                                        ]
                                    }
                                }
                            },
                        },
                        **_errors(400, 413, 415, 422, 503),
                    },
                }
            },
            "/api/v1/models": {
                "get": {
                    "summary": "The served models and their measured figures",
                    "operationId": "list_models",
                    "tags": ["models"],
                    "responses": {
                        "200": {"description": "The models", "content": _json("ModelList")},
                        **_errors(503),
                    },
                }
            },
            "/api/v1/cases": {
                "get": {
                    "summary": "Search the cases, newest first, 25 a page",
                    "operationId": "list_cases",
                    "tags": ["cases"],
                    "parameters": search,
                    "responses": {
                        "200": {"description": "A page of cases", "content": _json("CaseList")},
                        **_errors(422),
                    },
                },
                "post": {
                    "summary": "Create a case from 1-200 photographs",
                    "operationId": "create_case",
                    "tags": ["cases"],
                    "requestBody": {"required": True, "content": _UPLOAD},
                    "responses": {
                        "201": {"description": "The case", "content": _json("Case")},
                        **_errors(400, 413, 422, 503),
                    },
                },
            },
            "/api/v1/cases/{id}": {
                "parameters": [_CASE_ID],
                "get": {
                    "summary": "A case",
                    "operationId": "get_case",
                    "tags": ["cases"],
                    "responses": {
                        "200": {"description": "The case", "content": _json("Case")},
                        **_errors(404),
                    },
                },
                "delete": {
                    "summary": "Delete a case with its stored photographs",
                    "operationId": "delete_case",
                    "tags": ["cases"],
                    "responses": {"204": {"description": "Deleted"}, **_errors(404)},
                },
            },
            "/api/v1/cases/{id}/fields": {
                "parameters": [_CASE_ID],
                "post": {
                    "summary": "Add photographs to a case that is not signed off",
                    "operationId": "add_fields",
                    "tags": ["cases"],
                    "requestBody": {"required": True, "content": _UPLOAD},
                    "responses": {
                        "201": {"description": "The case", "content": _json("Case")},
                        **_errors(404, 409, 413, 422, 503),
                    },
                },
            },
            "/api/v1/cases/{id}/review": {
                "parameters": [_CASE_ID],
                "post": {
                    "summary": "Record a review; a signed-off case takes only linked corrections",
                    "operationId": "review_case",
                    "tags": ["cases"],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _REVIEW_BODY},
                            "application/x-www-form-urlencoded": {"schema": _REVIEW_BODY},
                        },
                    },
                    "responses": {
                        "201": {"description": "The case", "content": _json("Case")},
                        **_errors(404, 409, 422),
                    },
                },
            },
            "/api/v1/cases/{id}/cells": {
                "parameters": [_CASE_ID],
                "post": {
                    "summary": "Reclassify a cell a cell model read, in a case not signed off",
                    "description": "Each reclassification is written to the audit trail with "
                    "the cell and its class before and after; the case's `cell_counts` and "
                    "its photographs' follow.",
                    "operationId": "reclassify_cell",
                    "tags": ["cases"],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _RECLASSIFY_BODY},
                            "application/x-www-form-urlencoded": {"schema": _RECLASSIFY_BODY},
                        },
                    },
                    "responses": {
                        "200": {"description": "The case", "content": _json("Case")},
                        **_errors(404, 409, 422),
                    },
                },
            },
            "/api/v1/cases/{id}/report.pdf": {
                "parameters": [_CASE_ID],
                "get": {
                    "summary": "The case report as a PDF",
                    "operationId": "case_report",
                    "tags": ["cases"],
                    "responses": {
                        "200": {
                            "description": "The PDF",
                            "content": {"application/pdf": {"schema": {"type": "string"}}},
                        },
                        **_errors(404),
                    },
                },
            },
        },
        "security": [{"token": []}],
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "bearerFormat": "ball_<id>_<secret>"}
            },
            "schemas": {
                "Error": _ERROR,
                "Prediction": _PREDICTION,
                "Model": _MODEL,
                "ModelList": _MODEL_LIST,
                "CaseImage": _IMAGE,
                "Review": _REVIEW,
                "CaseSummary": _CASE_SUMMARY,
                "CaseList": _CASE_LIST,
                "Case": _CASE,
            },
        },
    }
