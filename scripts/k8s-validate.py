"""Strict schema validation of many manifest files on many Kubernetes versions, in one process.

Run by scripts/validate-k8s.sh with the venv's python (kubernetes-validate installed, pinned).
The `kubernetes-validate` command validates one version per run and re-reads the version's
1.2 MB `_definitions.json` for every object: with its Python start-up that is most of the
time of a run, and the tests ran it a dozen to seventy times. Here the same library function
(`kubernetes_validate.utils.validate_resource`, the one the command calls, with the same
strict schemas) validates every object of every file on every version, with each schema file
read once.

Usage: k8s-validate.py [--skip-kind KIND]... FILE:OLDEST:NEWEST...
  (minor versions: `base.yaml:25:37` is 1.25 to 1.37)

Prints `ok N FILE` on stdout for each file, N the number of versions it passed on, and what
failed on stderr: the validator's own lines, then `FAIL FILE against 1.M`, or `FAIL FILE: no
schema for kind KIND in Kubernetes 1.M` for a kind without a schema that is not skipped.
Exit: 0 when every file passed on every version of its range; 1 otherwise, or when the
validator accepts an unknown field (strict validation not in force: a pass would mean nothing).
"""

import contextlib
import functools
import io
import re
import sys

import kubernetes_validate.utils as kv

# Every object re-reads its version's schemas; they never change during a run.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

STRICTNESS_PROBE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "probe"},
    "spec": {"ports": [{"port": 80, "targetPrt": 8080}]},
}


def validate_on(resources, filename, version, skipped_kinds):
    """True when every object of the file validates strictly on `version`."""
    log = io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(log):
        for resource in resources:
            rc |= kv.validate_resource(
                resource=resource,
                filename=filename,
                version=version,
                strict=True,
                quiet=True,
                no_warn=False,
            )
    if rc:
        sys.stderr.write(log.getvalue())
        print(f"FAIL {filename} against {version}", file=sys.stderr)
        return False
    # A kind with no schema is only a warning to the validator; here it fails unless skipped.
    for kind in sorted(set(re.findall(r"Couldn't find schema for kind ([A-Za-z]*) ", log.getvalue()))):
        if kind not in skipped_kinds:
            sys.stderr.write(log.getvalue())
            print(f"FAIL {filename}: no schema for kind {kind} in Kubernetes {version}", file=sys.stderr)
            return False
    return True


def main(argv):
    skipped_kinds = set()
    ranges = []
    args = iter(argv)
    for arg in args:
        if arg == "--skip-kind":
            skipped_kinds.add(next(args))
        else:
            filename, oldest, newest = arg.rsplit(":", 2)
            ranges.append((filename, int(oldest), int(newest)))

    newest_overall = max(newest for _, _, newest in ranges)
    with contextlib.redirect_stdout(io.StringIO()):
        probe_rc = kv.validate_resource(STRICTNESS_PROBE, "strictness-probe", f"1.{newest_overall}",
                                        strict=True, quiet=True, no_warn=False)
    if probe_rc == 0:
        print("validate-k8s: kubernetes-validate accepted an unknown field (targetPrt): "
              "strict validation is not working", file=sys.stderr)
        return 1

    all_passed = True
    for filename, oldest, newest in ranges:
        resources = kv.resources_from_file(filename)
        passed = 0
        for minor in range(oldest, newest + 1):
            if validate_on(resources, filename, f"1.{minor}", skipped_kinds):
                passed += 1
            else:
                all_passed = False
        print(f"ok {passed} {filename}")
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
