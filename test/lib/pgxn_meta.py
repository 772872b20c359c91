#!/usr/bin/python3
"""Validates a META.json against the PGXN Meta Spec 1.0.x.

The rules are those of the spec (https://pgxn.org/spec/) as its JSON schemas
state them: required keys (name, version, abstract, maintainer, license,
provides, meta-spec), no unknown keys except custom x_/X_ ones, Terms,
semantic versions, version ranges, license shortcuts, prereq phases and
relationships, resources (homepage, bugtracker, repository), release_status,
tags and no_index.  Standard library only.

    pgxn_meta.py META.json [--root DIR | --zip FILE.zip] [--control FILE]
    pgxn_meta.py --selftest META.json

--root / --zip: the files named by provides (file, docfile) must exist in
the distribution (a zip's paths are relative to its one top directory).
--control: the control file's default_version must be the META version and
every provided extension's version.
--selftest: the given (valid) META passes, and each of a list of broken
copies of it fails with the expected complaint.

Prints one line per problem; exits 1 if there is any.
"""

import copy
import json
import re
import sys
import urllib.parse
import zipfile

SEMVER = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
          r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
          r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
          r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
SEMVER_RE = re.compile(r"\A" + SEMVER + r"\Z")
RANGE_ITEM_RE = re.compile(r"\A(?:(?:[=!]=|[<>]=?)\s*)?(?:" + SEMVER + r"|0)\Z")
CUSTOM_RE = re.compile(r"\A[xX]_.")
CNTRL = "".join(chr(c) for c in list(range(0, 32)) + [127])
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
TOP_KEYS = {"name", "version", "abstract", "maintainer", "license", "provides",
            "meta-spec", "description", "generated_by", "tags", "no_index",
            "prereqs", "release_status", "resources"}
REQUIRED = ["name", "version", "abstract", "maintainer", "license", "provides",
            "meta-spec"]
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONSHIPS = {"requires", "recommends", "suggests", "conflicts"}
SPEC_URLS = {"https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"}


class Checker:
    def __init__(self):
        self.errors = []

    def err(self, path, msg):
        self.errors.append("%s: %s" % (path, msg))

    # --- value types --------------------------------------------------------
    def string(self, path, v, min_len=1):
        if not isinstance(v, str):
            self.err(path, "must be a string")
            return False
        if len(v) < min_len:
            self.err(path, "must be at least %d characters" % min_len)
            return False
        return True

    def term(self, path, v):
        if not self.string(path, v, 2):
            return
        if any(c in v for c in "/\\") or any(c.isspace() for c in v) \
                or any(c in CNTRL for c in v):
            self.err(path, "a Term has no slash, backslash, space or control character: %r" % v)

    def tag(self, path, v):
        if not self.string(path, v, 2):
            return
        if len(v) > 255:
            self.err(path, "a Tag is shorter than 256 characters")
        if any(c in v for c in "/\\") or any(c in CNTRL for c in v):
            self.err(path, "a Tag has no slash, backslash or control character: %r" % v)

    def version(self, path, v):
        if not isinstance(v, str) or not SEMVER_RE.match(v):
            self.err(path, "not a semantic version (MAJOR.MINOR.PATCH[-pre][+build]): %r" % (v,))

    def version_range(self, path, v):
        if v == 0 and not isinstance(v, bool):
            return
        if not isinstance(v, str) or not all(RANGE_ITEM_RE.match(p.strip()) for p in v.split(",")):
            self.err(path, "not a version range: %r" % (v,))

    def uri(self, path, v):
        if not self.string(path, v):
            return
        u = urllib.parse.urlsplit(v)
        if not re.match(r"\A[a-zA-Z][a-zA-Z0-9+.-]*\Z", u.scheme or "") \
                or (u.scheme in ("http", "https", "git", "ssh", "ftp") and not u.netloc) \
                or any(c.isspace() for c in v):
            self.err(path, "not a URI: %r" % v)

    def email(self, path, v):
        if self.string(path, v) and not re.match(r"\A[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+\Z", v):
            self.err(path, "not an email address: %r" % v)

    def relpath(self, path, v):
        if not self.string(path, v, 2):
            return
        parts = v.split("/")
        if v.startswith("/") or "\\" in v or ".." in parts or "" in parts \
                or re.match(r"\A[A-Za-z]:", v):
            self.err(path, "not a relative path in Unix conventions: %r" % v)

    def obj(self, path, v, known, required=(), any_of=None):
        """An object with known keys (plus custom x_ keys)."""
        if not isinstance(v, dict):
            self.err(path, "must be an object")
            return False
        for k in v:
            if k not in known and not CUSTOM_RE.match(k):
                self.err(path, "unknown key %r" % k)
        for k in required:
            if k not in v:
                self.err(path, "missing required key %r" % k)
        if any_of is not None and not any(all(k in v for k in group) for group in any_of):
            self.err(path, "needs one of: %s" % " or ".join("+".join(g) for g in any_of))
        return True

    def unique_list(self, path, v, each):
        """A non-empty list without duplicates; each(path[i], item) checks items."""
        if not v:
            self.err(path, "an empty list")
        if len(set(map(json.dumps, v))) != len(v):
            self.err(path, "duplicate entries")
        for i, item in enumerate(v):
            each("%s[%d]" % (path, i), item)

    def license_shortcut(self, path, v):
        if v not in LICENSES:
            self.err(path, "unknown license shortcut %r" % (v,))

    # --- fields -------------------------------------------------------------
    def maintainer(self, v):
        if isinstance(v, list):
            self.unique_list("maintainer", v, self.string)
        else:
            self.string("maintainer", v)

    def license(self, v):
        if isinstance(v, str):
            self.license_shortcut("license", v)
        elif isinstance(v, list):
            self.unique_list("license", v, self.license_shortcut)
        elif isinstance(v, dict):
            if not v:
                self.err("license", "an empty object")
            for name, url in v.items():
                self.uri("license.%s" % name, url)
        else:
            self.err("license", "must be a shortcut, a list of shortcuts or an object of URIs")

    def provides(self, v):
        if not isinstance(v, dict):
            self.err("provides", "must be an object")
            return
        if not v:
            self.err("provides", "must provide at least one extension")
        for name, ext in v.items():
            p = "provides.%s" % name
            self.term(p, name)
            if not self.obj(p, ext, {"file", "version", "abstract", "docfile", "docpath"},
                            required=("file", "version")):
                continue
            if "file" in ext:
                self.relpath(p + ".file", ext["file"])
            if "version" in ext:
                self.version(p + ".version", ext["version"])
            if "abstract" in ext:
                self.string(p + ".abstract", ext["abstract"])
            if "docfile" in ext:
                self.relpath(p + ".docfile", ext["docfile"])
            if "docpath" in ext:
                self.string(p + ".docpath", ext["docpath"])

    def prereqs(self, v):
        if not self.obj("prereqs", v, PHASES, any_of=[[p] for p in sorted(PHASES)]):
            return
        for phase, rels in v.items():
            if CUSTOM_RE.match(phase):
                continue
            p = "prereqs.%s" % phase
            if not self.obj(p, rels, RELATIONSHIPS, any_of=[[r] for r in sorted(RELATIONSHIPS)]):
                continue
            for rel, reqs in rels.items():
                if CUSTOM_RE.match(rel):
                    continue
                q = "%s.%s" % (p, rel)
                if not isinstance(reqs, dict) or not reqs:
                    self.err(q, "must be a non-empty object of name: version range")
                    continue
                for name, rng in reqs.items():
                    self.term("%s.%s" % (q, name), name)
                    self.version_range("%s.%s" % (q, name), rng)

    def resources(self, v):
        if not self.obj("resources", v, {"homepage", "bugtracker", "repository"},
                        any_of=[["homepage"], ["bugtracker"], ["repository"]]):
            return
        if "homepage" in v:
            self.uri("resources.homepage", v["homepage"])
        if "bugtracker" in v:
            b = v["bugtracker"]
            if self.obj("resources.bugtracker", b, {"web", "mailto"}, any_of=[["web"], ["mailto"]]):
                if "web" in b:
                    self.uri("resources.bugtracker.web", b["web"])
                if "mailto" in b:
                    self.email("resources.bugtracker.mailto", b["mailto"])
        if "repository" in v:
            r = v["repository"]
            if self.obj("resources.repository", r, {"url", "web", "type"},
                        any_of=[["url", "type"], ["web"]]):
                for k in ("url", "web"):
                    if k in r:
                        self.uri("resources.repository." + k, r[k])
                if "type" in r and not (isinstance(r["type"], str) and re.match(r"\A[a-z]+\Z", r["type"])):
                    self.err("resources.repository.type", "a lowercase word (git, svn, hg, ...)")

    def meta_spec(self, v):
        if not self.obj("meta-spec", v, {"version", "url"}, required=("version",)):
            return
        if "version" in v and not (isinstance(v["version"], str)
                                   and re.match(r"\A1\.0\.\d+\Z", v["version"])):
            self.err("meta-spec.version", "must be 1.0.x, got %r" % (v["version"],))
        if "url" in v and v["url"] not in SPEC_URLS:
            self.err("meta-spec.url", "must be https://pgxn.org/meta/spec.txt")

    def no_index(self, v):
        if not self.obj("no_index", v, {"file", "directory"}, any_of=[["file"], ["directory"]]):
            return
        for k in ("file", "directory"):
            if k not in v:
                continue
            items = v[k] if isinstance(v[k], list) else [v[k]]
            if isinstance(v[k], list) and not items:
                self.err("no_index." + k, "an empty list")
            for i, f in enumerate(items):
                self.relpath("no_index.%s[%d]" % (k, i), f)

    def check(self, meta):
        if not isinstance(meta, dict):
            self.err("META", "must be a JSON object")
            return
        for k in meta:
            if k not in TOP_KEYS and not CUSTOM_RE.match(k):
                self.err("META", "unknown key %r" % k)
        for k in REQUIRED:
            if k not in meta:
                self.err("META", "missing required key %r" % k)
        if "name" in meta:
            self.term("name", meta["name"])
        if "version" in meta:
            self.version("version", meta["version"])
        for k in ("abstract", "description", "generated_by"):
            if k in meta:
                self.string(k, meta[k])
        if "maintainer" in meta:
            self.maintainer(meta["maintainer"])
        if "license" in meta:
            self.license(meta["license"])
        if "provides" in meta:
            self.provides(meta["provides"])
        if "meta-spec" in meta:
            self.meta_spec(meta["meta-spec"])
        if "prereqs" in meta:
            self.prereqs(meta["prereqs"])
        if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
            self.err("release_status", "must be stable, testing or unstable, got %r"
                     % (meta["release_status"],))
        if "resources" in meta:
            self.resources(meta["resources"])
        if "tags" in meta:
            if isinstance(meta["tags"], list):
                self.unique_list("tags", meta["tags"], self.tag)
            else:
                self.err("tags", "must be a list")
        if "no_index" in meta:
            self.no_index(meta["no_index"])


def no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r" % k)
        d[k] = v
    return d


def parse(text):
    return json.loads(text, object_pairs_hook=no_duplicates)


def validate(meta, files=None, control=None):
    c = Checker()
    c.check(meta)
    if files is not None and isinstance(meta.get("provides"), dict):
        for name, ext in meta["provides"].items():
            for k in ("file", "docfile"):
                if isinstance(ext, dict) and isinstance(ext.get(k), str) and ext[k] not in files:
                    c.err("provides.%s.%s" % (name, k), "%s is not in the distribution" % ext[k])
    if control is not None:
        m = re.search(r"^\s*default_version\s*=\s*'([^']*)'", control, re.M)
        dv = m.group(1) if m else None
        if meta.get("version") != dv:
            c.err("version", "%r differs from the control file's default_version %r"
                  % (meta.get("version"), dv))
        for name, ext in (meta.get("provides") or {}).items():
            if isinstance(ext, dict) and ext.get("version") != dv:
                c.err("provides.%s.version" % name, "%r differs from default_version %r"
                      % (ext.get("version"), dv))
    return c.errors


def selftest(meta):
    """Each broken copy must fail with a complaint naming the field."""
    def broken(change):
        m = copy.deepcopy(meta)
        change(m)
        return m
    first = next(iter(meta["provides"]))
    cases = [
        ("version", lambda m: m.update(version="0.2")),
        ("version", lambda m: m.update(version="v0.2.0")),
        ("version", lambda m: m.update(version="01.2.0")),
        ("META", lambda m: m.pop("maintainer")),
        ("META", lambda m: m.pop("meta-spec")),
        ("META", lambda m: m.update(homepage="https://example.org/")),
        ("name", lambda m: m.update(name="harbor orm")),
        ("license", lambda m: m.update(license="PostgreSQL License")),
        ("provides", lambda m: m.update(provides={})),
        ("provides.%s" % first, lambda m: m["provides"][first].pop("version")),
        ("provides.%s" % first, lambda m: m["provides"][first].pop("file")),
        ("provides.%s.file" % first, lambda m: m["provides"][first].update(file="/sql/x.sql")),
        ("provides.%s.version" % first, lambda m: m["provides"][first].update(version="1.0")),
        ("provides.%s" % first, lambda m: m["provides"][first].update(docs="README.md")),
        ("prereqs", lambda m: m.update(prereqs={"runtime": {"needs": {"PostgreSQL": "13.0.0"}}})),
        ("prereqs.runtime.requires.PostgreSQL",
         lambda m: m.update(prereqs={"runtime": {"requires": {"PostgreSQL": "13"}}})),
        ("prereqs.runtime.requires.PostgreSQL",
         lambda m: m.update(prereqs={"runtime": {"requires": {"PostgreSQL": "=> 13.0.0"}}})),
        ("prereqs", lambda m: m.update(prereqs={"install": {"requires": {"PostgreSQL": 0}}})),
        ("release_status", lambda m: m.update(release_status="beta")),
        ("resources", lambda m: m.update(resources={"homepage": "https://example.org/", "wiki": "x"})),
        ("resources.homepage", lambda m: m.update(resources={"homepage": "not a uri"})),
        ("resources.bugtracker.mailto", lambda m: m.update(resources={"bugtracker": {"mailto": "nobody"}})),
        ("resources.repository", lambda m: m.update(resources={"repository": {"url": "https://example.org/x.git"}})),
        ("meta-spec.version", lambda m: m.update({"meta-spec": {"version": "2.0.0"}})),
        ("tags[0]", lambda m: m.update(tags=["a/b"])),
        ("tags", lambda m: m.update(tags=["orm", "orm"])),
        ("license", lambda m: m.update(license=[])),
        ("license[1]", lambda m: m.update(license=["postgresql", "bsd3"])),
        ("maintainer", lambda m: m.update(maintainer=["a <a@example.org>", "a <a@example.org>"])),
    ]
    failures = 0
    errs = validate(meta)
    if errs:
        print("not ok - the given META.json is valid: " + "; ".join(errs))
        failures += 1
    for want, change in cases:
        errs = validate(broken(change))
        if not any(e.startswith(want + ":") or e.startswith(want + ".") for e in errs):
            print("not ok - a broken META (%s) is refused: got %r" % (want, errs))
            failures += 1
    try:
        parse('{"name": "a", "name": "b"}')
        print("not ok - a duplicate key is refused")
        failures += 1
    except ValueError:
        pass
    print("selftest: %d broken METAs refused, %d failures" % (len(cases) + 1, failures))
    return failures == 0


def main(argv):
    args = argv[1:]
    if args and args[0] == "--selftest":
        with open(args[1], encoding="utf-8") as f:
            return 0 if selftest(parse(f.read())) else 1
    meta_path, files, control = None, None, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--root":
            import os
            root = args[i + 1]
            files = set()
            for d, _, fs in os.walk(root):
                for f in fs:
                    files.add(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
            i += 2
        elif a == "--zip":
            with zipfile.ZipFile(args[i + 1]) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
            tops = {n.split("/", 1)[0] for n in names}
            files = {n.split("/", 1)[1] for n in names if "/" in n} if len(tops) == 1 else set()
            i += 2
        elif a == "--control":
            with open(args[i + 1], encoding="utf-8") as f:
                control = f.read()
            i += 2
        else:
            meta_path = a
            i += 1
    if meta_path is None:
        print(__doc__)
        return 2
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = parse(f.read())
    except (OSError, ValueError) as e:
        print("%s: not valid JSON: %s" % (meta_path, e))
        return 1
    errs = validate(meta, files, control)
    for e in errs:
        print(e)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
