"""Fit one OOD detector (score + label set) of an ID set, calibrate it on the ID set's held-out
ID images (their sorted scores give thresholds and p-values of new images) and save it as one
HDF5 file."""

import torch

from clustermine.compute import budget_from_mb
from clustermine.detectors.files import fit_detector_files
from clustermine.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params, wc, res = snakemake.input, snakemake.params, snakemake.wildcards, snakemake.resources
detector = fit_detector_files(
    params.score,
    params.score_params,
    train=inp.train,
    text=inp.text,
    labels=inp.labels[0] if inp.labels else None,
    classes=inp.classes[0] if inp.classes else None,
    extra=inp.extra[0] if inp.extra else None,
    calibration=inp.calibration[0] if inp.calibration else None,
    calibration_name=params.calibration,
    calibration_local=inp.calibration_local[0] if "calibration_local" in inp.keys() else None,
    calibration_views=list(inp.calibration_views) if "calibration_views" in inp.keys() else (),
    context={"model": wc.model, "idset": wc.idset, "method": wc.method, "labels": params.labels},
    device=res.device,
    budget_bytes=budget_from_mb(res.budget_mb),
)
detector.save(snakemake.output[0])
