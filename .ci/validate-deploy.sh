#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine:
#
#   k8s/        every manifest against the Kubernetes API schemas, strict
#               (kubernetes-validate), for the oldest and newest Kubernetes in
#               MYELIN_K8S_VERSIONS, one file at a time and, when kubectl or
#               kustomize is installed, as `kustomize build` renders them;
#               traefik's custom resources by the shape the gateway route needs;
#               and the references between objects (selectors, ports, Secrets
#               and ConfigMaps, the files processes open, HPAs).
#   swarm/      stack.yml through `docker stack config` (the CLI's own loader,
#               which needs no engine), plus the references inside it (secrets, configs, networks,
#               upstreams, health-check tools).
#   Dockerfile  hadolint, when it is installed; the binaries and roles the
#               image ships against the workspace and docker/start.sh.
#   traefik     the labels in stack.yml against traefik's own flags, against
#               any traefik file-provider config in the repository and
#               against the host names the Kubernetes routes use.
#
# Prints each check; exits 1 when any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION="1.37.0"
export MYELIN_K8S_VERSIONS="${MYELIN_K8S_VERSIONS:-1.30 1.37}"

# The venv is shared with the interop tests and the load tests.
venv="$(bash scripts/python-venv.sh "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" | tail -n 1)"

export MYELIN_VENV_BIN="$venv/bin"
exec "$venv/bin/python" - <<'PY'
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path.cwd()
K8S_VERSIONS = os.environ["MYELIN_K8S_VERSIONS"].split()
LISTENER_PORT = 8008
passed, failed, notes = 0, 0, 0


def section(title):
    print(f"\n==> {title}")


def ok(what):
    global passed
    passed += 1
    print(f"ok    {what}")


def fail(what, why):
    global failed
    failed += 1
    print(f"FAIL  {what}")
    for line in str(why).splitlines():
        print(f"        {line}")


def check(what, problems):
    """One check: ok when `problems` is empty, else a failure listing them."""
    if problems:
        fail(what, "\n".join(problems))
    else:
        ok(what)


def note(what):
    global notes
    notes += 1
    print(f"note  {what}")


def skip(what, why):
    print(f"skip  {what}: {why}")


def rel(path):
    return str(Path(path).relative_to(ROOT))


def load_docs(path):
    with open(path) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def host_of(url):
    match = re.match(r"^[a-z]+://([^/:]+)(?::(\d+))?", url)
    return (match.group(1), int(match.group(2)) if match.group(2) else None) if match else (None, None)


def hosts_in_rule(rule):
    """The names in every Host(`a`, `b`) of a traefik rule."""
    names = set()
    for args in re.findall(r"Host\(([^)]*)\)", rule or ""):
        names.update(re.findall(r"`([^`]+)`", args))
    return names


# ---------------------------------------------------------------------------
# The image: Dockerfile, docker/start.sh, .dockerignore, the workspace.

def workspace_binaries():
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    names = set()
    for member in root.get("workspace", {}).get("members", []):
        manifest = ROOT / member / "Cargo.toml"
        if not manifest.is_file():
            continue
        package = tomllib.loads(manifest.read_text())
        bins = package.get("bin", [])
        names.update(entry["name"] for entry in bins)
        if not bins and (ROOT / member / "src" / "main.rs").is_file():
            names.add(package["package"]["name"])
    return names


def dockerfile_final_stage(text):
    stages = re.split(r"(?im)^FROM\s", text)
    return stages[-1] if len(stages) > 1 else ""


def joined_lines(text):
    return re.sub(r"\\\n", " ", text)


def runtime_packages(final_stage):
    packages = set()
    for line in joined_lines(final_stage).splitlines():
        for segment in re.findall(r"apt-get\s+install\s+(.*?)(?:&&|;|$)", line):
            packages.update(word for word in segment.split() if not word.startswith("-"))
    return packages


def image_binaries(text):
    match = re.search(r"for bin in ([^;]+);", joined_lines(text))
    return set(match.group(1).split()) if match else set()


def start_sh_roles():
    text = (ROOT / "docker" / "start.sh").read_text()
    match = re.search(r"^\s*((?:[a-z-]+\s*\|\s*)*[a-z-]+)\)\s*\n\s*exec \"myelin-\$role\"", text, re.M)
    return {role.strip() for role in match.group(1).split("|")} if match else set()


def image_checks():
    section("Dockerfile, docker/start.sh, .dockerignore")
    dockerfile = ROOT / "Dockerfile"
    if not dockerfile.is_file():
        fail("Dockerfile", "missing")
        return
    text = dockerfile.read_text()
    final = dockerfile_final_stage(text)

    problems = []
    if not re.search(r"(?im)^FROM\s+rust:\S+\s+AS\s+\w+", text):
        problems.append("no rust builder stage")
    if "cargo build --release --locked" not in text:
        problems.append("the builder does not run cargo build --release --locked")
    user = re.findall(r"(?im)^USER\s+(\S+)", final)
    if not user or user[-1].split(":")[0] in ("root", "0"):
        problems.append("the runtime stage does not switch to a non-root USER")
    if not re.search(rf"(?im)^EXPOSE\s+.*\b{LISTENER_PORT}\b", final):
        problems.append(f"the runtime stage does not EXPOSE {LISTENER_PORT}")
    if not re.search(r'(?im)^VOLUME\s+.*"?/data"?', final):
        problems.append("no VOLUME /data")
    if "ca-certificates" not in runtime_packages(final):
        problems.append("the runtime stage does not install ca-certificates")
    if not re.search(r"(?im)^COPY\s.*docker/start\.sh\s+/start\.sh", final) or not re.search(r'(?im)^ENTRYPOINT\s+\["/start\.sh"\]', final):
        problems.append("the entrypoint is not docker/start.sh")
    check("Dockerfile: rust builder, non-root runtime with /data, EXPOSE 8008, docker/start.sh entrypoint", problems)

    shipped = image_binaries(text)
    built = workspace_binaries()
    check(f"Dockerfile ships every workspace binary ({', '.join(sorted(built))})",
          [f"{name} is built but not copied into the image" for name in sorted(built - shipped)])
    for name in sorted(shipped - built):
        note(f"Dockerfile copies {name}, which no workspace crate builds yet: `docker build` stops until it exists")
    roles = start_sh_roles()
    check(f"docker/start.sh roles ({', '.join(sorted(roles))}) each have a binary in the image",
          ([] if roles else ["no MYELIN_ROLE case found in docker/start.sh"])
          + [f"MYELIN_ROLE={role} runs myelin-{role}, which the image does not ship" for role in sorted(roles) if f"myelin-{role}" not in shipped])

    result = subprocess.run(["sh", "-n", "docker/start.sh"], capture_output=True, text=True)
    check("docker/start.sh: sh -n", [result.stderr.strip()] if result.returncode else [])
    if not os.access(ROOT / "docker" / "start.sh", os.X_OK):
        fail("docker/start.sh", "not executable")
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = subprocess.run([shellcheck, "-s", "sh", "docker/start.sh"], capture_output=True, text=True)
        check("docker/start.sh: shellcheck", [result.stdout.strip()] if result.returncode else [])

    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=os.environ.get("MYELIN_VENV_BIN", ""))
    if hadolint:
        result = subprocess.run([hadolint, "Dockerfile"], capture_output=True, text=True)
        check("Dockerfile: hadolint", [(result.stdout + result.stderr).strip()] if result.returncode else [])
    else:
        skip("Dockerfile: hadolint", "not installed")

    ignore = ROOT / ".dockerignore"
    if not ignore.is_file():
        fail(".dockerignore", "missing: the build context would include target/ and .git")
        return
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    needed = ["Cargo.toml", "Cargo.lock", "docker/start.sh", "migrations"] + members
    def ignored(path):
        return any(fnmatch.fnmatch(path, pattern.rstrip("/")) or path.startswith(pattern.rstrip("/") + "/")
                   for pattern in patterns if not pattern.startswith("!"))
    problems = [f"{path} is excluded from the build context" for path in needed if ignored(path)]
    for heavy in ("target", ".git"):
        if not ignored(heavy):
            problems.append(f"{heavy} is not excluded from the build context")
    check(".dockerignore keeps the workspace and drops target/ and .git", problems)


# ---------------------------------------------------------------------------
# Kubernetes.

def builtin_api(api_version):
    group = api_version.split("/")[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def kinds_of(docs):
    return ", ".join(f"{doc['kind'].lower()}/{doc.get('metadata', {}).get('name')}" for doc in docs)


def kubernetes_checks():
    section(f"k8s/: manifests, strict, against Kubernetes {', '.join(K8S_VERSIONS)} "
            f"(kubernetes-validate {kubernetes_validate.__version__})")
    directory = ROOT / "k8s"
    kustomization_path = directory / "kustomization.yaml"
    if not kustomization_path.is_file():
        fail("k8s/kustomization.yaml", "missing")
        return []
    kustomization = yaml.safe_load(kustomization_path.read_text())
    resources = kustomization.get("resources", [])
    problems = []
    if not str(kustomization.get("apiVersion", "")).startswith("kustomize.config.k8s.io/") or kustomization.get("kind") != "Kustomization":
        problems.append("not a kustomize.config.k8s.io Kustomization")
    problems += [f"resource {name} does not exist" for name in resources if not (directory / name).is_file()]
    check(f"k8s/kustomization.yaml lists {len(resources)} resources that exist", problems)
    namespace = kustomization.get("namespace", "default")

    files = sorted(path for path in directory.glob("*.y*ml") if path.name != "kustomization.yaml")
    rendered = []  # (file name, document, listed in the kustomization)
    for path in files:
        listed = path.name in resources
        try:
            docs = load_docs(path)
        except yaml.YAMLError as error:
            fail(rel(path), f"not YAML: {error}")
            continue
        builtin = [doc for doc in docs if builtin_api(str(doc.get("apiVersion", "")))]
        custom = [doc for doc in docs if doc not in builtin]
        if not listed:
            if builtin:
                fail(rel(path), "holds Kubernetes objects but is not in kustomization.yaml's resources")
            else:
                ok(f"{rel(path)}: custom resources only, applied on its own (needs their CRDs), not in kustomization.yaml")
        for doc in docs:
            if listed and doc.get("kind") != "Namespace":
                doc.setdefault("metadata", {}).setdefault("namespace", namespace)
            rendered.append((path.name, doc, listed))

        if builtin:
            check(f"{rel(path)}: {kinds_of(builtin)}", validation_problems(builtin))
        if custom:
            # No schema of traefik's own is kept here: check the shape the gateway route needs.
            problems = []
            for doc in custom:
                name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
                if not str(doc.get("apiVersion", "")).startswith("traefik.io/"):
                    problems.append(f"{name}: unknown custom resource {doc.get('apiVersion')}")
                    continue
                routes = (doc.get("spec") or {}).get("routes")
                if doc.get("kind") == "IngressRoute":
                    if not isinstance(routes, list) or not routes:
                        problems.append(f"{name}: spec.routes must be a non-empty list")
                        continue
                    for index, route in enumerate(routes):
                        if not isinstance(route.get("match"), str) or not route.get("services"):
                            problems.append(f"{name}: routes[{index}] needs a match rule and services")
            check(f"{rel(path)}: {kinds_of(custom)} (structure)", problems)

    render_with_kustomize(directory, rendered, namespace)
    kubernetes_references(rendered, namespace)
    return rendered


def validation_problems(docs):
    problems = []
    for doc in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(part) for part in error.path) or "(top)"
                problems.append(f"{doc['kind']}/{doc['metadata'].get('name')} on {version}: {where}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                problems.append(error.message)
    return problems


def render_with_kustomize(directory, rendered, namespace):
    """kustomize's own rendering, when kustomize or kubectl is installed."""
    if kustomize := shutil.which("kustomize"):
        command = [kustomize, "build", rel(directory)]
    elif kubectl := shutil.which("kubectl"):
        command = [kubectl, "kustomize", rel(directory)]
    else:
        skip("kustomize build", "neither kustomize nor kubectl is installed; checked the listed files one by one")
        return
    shown = " ".join([Path(command[0]).name] + command[1:])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        fail(shown, result.stderr.strip())
        return
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    problems = validation_problems(docs)
    built = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    listed = {(doc["kind"], doc["metadata"]["name"]) for _, doc, is_listed in rendered if is_listed}
    problems += [f"{kind}/{name} is in the listed files but not in the build" for kind, name in sorted(listed - built)]
    problems += [f"{kind}/{name} is in the build but in no listed file" for kind, name in sorted(built - listed)]
    problems += [f"{doc['kind']}/{doc['metadata']['name']} is in namespace {doc['metadata'].get('namespace')}, not {namespace}"
                 for doc in docs if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != namespace]
    check(f"{shown}: {len(docs)} objects in namespace {namespace}, each valid, strict", problems)


def pod_spec(doc):
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return doc["spec"]["template"]["spec"], doc["spec"]["template"]["metadata"].get("labels", {})
    return None, None


def kubernetes_references(rendered, namespace):
    section("k8s/: references between the objects")
    objects = {}
    for _, doc, _ in rendered:
        objects[(doc["kind"], doc["metadata"]["name"])] = doc
    workloads = [doc for _, doc, _ in rendered if pod_spec(doc)[0] is not None]
    services = {name: doc for (kind, name), doc in objects.items() if kind == "Service"}
    configmaps = {name: doc for (kind, name), doc in objects.items() if kind == "ConfigMap"}
    secrets = {name: doc for (kind, name), doc in objects.items() if kind == "Secret"}

    def secret_keys(name):
        doc = secrets.get(name, {})
        return set(doc.get("data", {}) or {}) | set(doc.get("stringData", {}) or {})

    def configmap_keys(name):
        return set((configmaps.get(name, {}).get("data") or {}))

    # Services select pods and name their ports.
    problems = []
    for name, service in services.items():
        selector = service["spec"].get("selector") or {}
        selected = [w for w in workloads if selector and all(pod_spec(w)[1].get(k) == v for k, v in selector.items())]
        if not selected:
            problems.append(f"Service {name} selects no pods")
            continue
        container_ports = {(p.get("name"), p["containerPort"]) for w in selected for c in pod_spec(w)[0]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if not any(target in pair for pair in container_ports):
                problems.append(f"Service {name} port {port['port']} targets {target}, which its pods do not expose")
    for workload in workloads:
        if workload["kind"] == "StatefulSet" and workload["spec"].get("serviceName") not in services:
            problems.append(f"StatefulSet {workload['metadata']['name']} names Service {workload['spec'].get('serviceName')}, which does not exist")
    check(f"Services select pods and target ports they expose ({', '.join(sorted(services))})", problems)

    def service_port(name, port):
        service = services.get(name)
        if not service:
            return f"Service {name} does not exist"
        ports = service["spec"]["ports"]
        if not any(port in (p.get("name"), p["port"]) for p in ports):
            return f"Service {name} has no port {port}"
        return None

    # The routes in: Ingress and traefik IngressRoutes.
    problems = []
    for (kind, name), doc in objects.items():
        if kind == "Ingress":
            for rule in doc["spec"].get("rules", []):
                for path in rule.get("http", {}).get("paths", []):
                    backend = path["backend"]["service"]
                    port = backend["port"].get("name", backend["port"].get("number"))
                    if problem := service_port(backend["name"], port):
                        problems.append(f"Ingress {name}: {problem}")
        if kind == "IngressRoute":
            for route in doc["spec"].get("routes", []):
                for target in route.get("services", []):
                    if target.get("kind", "Service") == "Service" and (problem := service_port(target["name"], target.get("port"))):
                        problems.append(f"IngressRoute {name}: {problem}")
                for middleware in route.get("middlewares", []):
                    if ("Middleware", middleware["name"]) not in objects:
                        problems.append(f"IngressRoute {name}: Middleware {middleware['name']} does not exist")
    check("Ingress and IngressRoute backends are existing Service ports", problems)

    # Autoscalers and the one event persister.
    problems = []
    for (kind, name), doc in objects.items():
        if kind == "HorizontalPodAutoscaler":
            target = doc["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) not in objects:
                problems.append(f"HPA {name} scales {target['kind']} {target['name']}, which does not exist")
            if target["name"] == "event-persister":
                problems.append(f"HPA {name} scales the event-persister, which must stay at one replica")
    persister = objects.get(("Deployment", "event-persister"))
    if persister is None:
        problems.append("no Deployment event-persister")
    else:
        if persister["spec"].get("replicas", 1) != 1:
            problems.append("Deployment event-persister has more than one replica")
        if persister["spec"].get("strategy", {}).get("type") != "Recreate":
            problems.append("Deployment event-persister does not use the Recreate strategy (a rolling update runs two at once)")
    check("HPAs target existing Deployments; event-persister stays at one replica, Recreate", problems)

    # Volumes, keys and the files the processes open.
    problems, homeservers = [], []
    for workload in workloads:
        spec, _ = pod_spec(workload)
        wname = f"{workload['kind']} {workload['metadata']['name']}"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for claim in workload["spec"].get("volumeClaimTemplates", []):
            volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "persistentVolumeClaim": {}}
        for volume in volumes.values():
            if "configMap" in volume and volume["configMap"]["name"] not in configmaps:
                problems.append(f"{wname}: ConfigMap {volume['configMap']['name']} does not exist")
            if "secret" in volume and volume["secret"]["secretName"] not in secrets:
                problems.append(f"{wname}: Secret {volume['secret']['secretName']} does not exist")
        for container in spec["containers"] + spec.get("initContainers", []):
            mounts = container.get("volumeMounts", [])
            for mount in mounts:
                if mount["name"] not in volumes:
                    problems.append(f"{wname}: mount of undeclared volume {mount['name']}")
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    if ref["key"] not in secret_keys(ref["name"]):
                        problems.append(f"{wname}: {env['name']} reads key {ref['key']} of Secret {ref['name']}, which it lacks")
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    if ref["key"] not in configmap_keys(ref["name"]):
                        problems.append(f"{wname}: {env['name']} reads key {ref['key']} of ConfigMap {ref['name']}, which it lacks")

            def resolve(path, what):
                """The key a file path reads from a ConfigMap or Secret volume, checked."""
                candidates = [m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
                if not candidates:
                    problems.append(f"{wname}: {what} {path} is on no volume")
                    return None
                mount = max(candidates, key=lambda m: len(m["mountPath"]))
                volume = volumes.get(mount["name"], {})
                key = mount.get("subPath") or path[len(mount["mountPath"].rstrip("/")) + 1:]
                if "configMap" in volume:
                    if key not in configmap_keys(volume["configMap"]["name"]):
                        problems.append(f"{wname}: {what} {path}: ConfigMap {volume['configMap']['name']} has no key {key}")
                    return ("ConfigMap", volume["configMap"]["name"], key)
                if "secret" in volume:
                    if key not in secret_keys(volume["secret"]["secretName"]):
                        problems.append(f"{wname}: {what} {path}: Secret {volume['secret']['secretName']} has no key {key}")
                    return ("Secret", volume["secret"]["secretName"], key)
                return None

            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for name, value in env.items():
                if value and name.startswith("MYELIN_") and (name.endswith("_FILE") or name == "MYELIN_CONFIG_PATH"):
                    found = resolve(value, name)
                    if name == "MYELIN_CONFIG_PATH" and found and found[0] == "ConfigMap":
                        text = configmaps[found[1]]["data"][found[2]]
                        try:
                            homeserver = yaml.safe_load(text)
                        except yaml.YAMLError as error:
                            problems.append(f"{wname}: {found[1]}/{found[2]} is not YAML: {error}")
                            continue
                        homeservers.append((wname, homeserver, env, container))
                        for key, path in homeserver.items():
                            if key.endswith("_path") and isinstance(path, str) and key != "pid_file":
                                resolve(path, key)
    check("ConfigMaps, Secrets, their keys and the files named in env and homeserver.yaml exist", problems)

    # homeserver.yaml and the services it and the gateway name.
    problems = []
    if not homeservers:
        problems.append("no Myelin container reads homeserver.yaml from a ConfigMap (MYELIN_CONFIG_PATH)")
    for wname, homeserver, env, container in homeservers:
        if not str(homeserver.get("server_name", "")).strip():
            problems.append(f"{wname}: homeserver.yaml has no server_name")
        database = homeserver.get("database") or {}
        if database.get("name") in ("psycopg2", "postgres", "postgresql"):
            host = (database.get("args") or {}).get("host")
            if problem := service_port(host, (database.get("args") or {}).get("port", 5432)):
                problems.append(f"{wname}: database.args.host: {problem}")
            if "MYELIN_DATABASE__ARGS__PASSWORD_FILE" not in env and "password" not in (database.get("args") or {}):
                problems.append(f"{wname}: no database password (MYELIN_DATABASE__ARGS__PASSWORD_FILE)")
        bus = homeserver.get("bus") or {}
        if bus.get("type") == "nats":
            host, port = host_of(bus.get("url", ""))
            if problem := service_port(host, port or 4222):
                problems.append(f"{wname}: bus.url: {problem}")
        ports = [l.get("port") for l in homeserver.get("listeners", [])]
        if LISTENER_PORT not in ports or not any(p.get("containerPort") == LISTENER_PORT for p in container.get("ports", [])):
            problems.append(f"{wname}: the listener and the container port are not both {LISTENER_PORT}")
        if env.get("MYELIN_ROLE") not in start_sh_roles():
            problems.append(f"{wname}: MYELIN_ROLE={env.get('MYELIN_ROLE')} is not a role docker/start.sh runs")
        probes = (container.get("readinessProbe", {}).get("httpGet", {}).get("path"),
                  container.get("livenessProbe", {}).get("httpGet", {}).get("path"))
        if probes != ("/ready", "/health"):
            problems.append(f"{wname}: readiness/liveness probe paths are {probes}, not (/ready, /health)")
        for name, value in env.items():
            if name.startswith("MYELIN_GATEWAY__") and value:
                for url in value.split(","):
                    host, port = host_of(url.strip())
                    if problem := service_port(host, port or 80):
                        problems.append(f"{wname}: {name}: {problem}")
                    elif services[host]["spec"].get("clusterIP") != "None":
                        problems.append(f"{wname}: {name}: Service {host} is not headless, so its name resolves to one address, not every replica")
    check("homeserver.yaml, probes and the gateway's upstreams point at existing headless Services", problems)


# ---------------------------------------------------------------------------
# Docker Swarm.

def interpolate(text, env):
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default} and ${VAR:?error}."""
    def replace(match):
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        if op in (":-", ":?") and not value or op == "-" and value is None:
            return arg if op != ":?" else "INVALID"
        return value or ""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-|:\?)([^}]*))?\}", replace, text).replace("$$", "$")


def stack_environment(text):
    """The process environment, plus a placeholder for each variable the file requires."""
    env = dict(os.environ)
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text):
        if not env.get(name):
            env[name] = f"validate-{name.lower()}@example.org" if "EMAIL" in name else f"validate-{name.lower()}"
            note(f"swarm/stack.yml requires {name}; checked with {name}={env[name]}")
    return env


def as_dict(value, separator="="):
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    result = {}
    for item in value or []:
        key, _, val = str(item).partition(separator)
        result[key] = val
    return result


def swarm_checks():
    section("swarm/stack.yml")
    path = ROOT / "swarm" / "stack.yml"
    if not path.is_file():
        fail("swarm/stack.yml", "missing")
        return None
    text = path.read_text()
    env = stack_environment(text)

    docker = shutil.which("docker")
    if docker:
        result = subprocess.run([docker, "stack", "config", "-c", str(path)], capture_output=True, text=True, env=env)
        unsupported = re.search(r"unknown (command|flag)|is not a docker command|Usage:\s+docker stack \[OPTIONS\]", result.stderr)
        if result.returncode == 0:
            ok("docker stack config -c swarm/stack.yml: the Docker CLI's stack loader accepts it")
        elif unsupported:
            skip("docker stack config", "this docker CLI has no `stack config`")
        else:
            fail("docker stack config -c swarm/stack.yml", result.stderr.strip() or result.stdout.strip())
    else:
        skip("docker stack config", "no docker CLI")

    try:
        stack = yaml.safe_load(interpolate(text, env))
    except yaml.YAMLError as error:
        fail("swarm/stack.yml", f"not YAML: {error}")
        return None
    services = stack.get("services", {})
    networks = stack.get("networks", {}) or {}
    net_names = {key: (value or {}).get("name", f"myelin_{key}") for key, value in networks.items()}
    final = dockerfile_final_stage((ROOT / "Dockerfile").read_text()) if (ROOT / "Dockerfile").is_file() else ""
    image_tools = runtime_packages(final) | image_binaries((ROOT / "Dockerfile").read_text() if final else "")
    roles = start_sh_roles()

    def service_networks(service):
        value = service.get("networks", ["default"])
        return set(value if isinstance(value, list) else value.keys())

    problems = []
    for name, service in services.items():
        for kind in ("secrets", "configs"):
            declared = stack.get(kind, {}) or {}
            for ref in service.get(kind, []) or []:
                source = ref if isinstance(ref, str) else ref.get("source")
                if source not in declared:
                    problems.append(f"{name}: {kind[:-1]} {source} is not declared")
        for network in service_networks(service):
            if network != "default" and network not in networks:
                problems.append(f"{name}: network {network} is not declared")
        for volume in service.get("volumes", []) or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith(("/", ".", "~")) and source not in (stack.get("volumes") or {}):
                problems.append(f"{name}: volume {source} is not declared")
    check("services use only declared secrets, configs, networks and volumes", problems)

    myelin = {name: s for name, s in services.items() if "MYELIN_ROLE" in as_dict(s.get("environment"))}
    problems = []
    for name, service in myelin.items():
        environment = as_dict(service.get("environment"))
        role = environment["MYELIN_ROLE"]
        if role not in roles:
            problems.append(f"{name}: MYELIN_ROLE={role} is not a role docker/start.sh runs ({', '.join(sorted(roles))})")
        secret_files = {}
        for ref in service.get("secrets", []) or []:
            source = ref if isinstance(ref, str) else ref["source"]
            target = source if isinstance(ref, str) else ref.get("target", source)
            secret_files[target if target.startswith("/") else f"/run/secrets/{target}"] = source
        config_files = {(ref.get("target") if isinstance(ref, dict) else f"/{ref}") for ref in service.get("configs", []) or []}
        for key, value in environment.items():
            if key.endswith("_FILE") or key == "MYELIN_SIGNING_KEY_PATH":
                if value not in secret_files and value not in config_files:
                    problems.append(f"{name}: {key}={value} is not a secret or config mounted in the service")
        if environment.get("MYELIN_CONFIG_PATH") not in config_files:
            problems.append(f"{name}: MYELIN_CONFIG_PATH={environment.get('MYELIN_CONFIG_PATH')} is not a mounted config")
        for key in ("MYELIN_DATABASE__ARGS__HOST",):
            host = environment.get(key)
            if host and host not in services:
                problems.append(f"{name}: {key}={host} is no service in the stack")
            elif host and not service_networks(service) & service_networks(services[host]):
                problems.append(f"{name}: shares no network with {host}")
        if environment.get("MYELIN_BUS__TYPE") == "nats":
            host, _ = host_of(environment.get("MYELIN_BUS__URL", ""))
            if host not in services:
                problems.append(f"{name}: MYELIN_BUS__URL names {host}, no service in the stack")
            elif not service_networks(service) & service_networks(services[host]):
                problems.append(f"{name}: shares no network with {host}")
        test = (service.get("healthcheck") or {}).get("test") or []
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        tool = (test[1].split()[0] if test[0] == "CMD-SHELL" else test[1]) if len(test) > 1 else None
        if not tool:
            problems.append(f"{name}: no healthcheck")
        elif tool not in image_tools:
            problems.append(f"{name}: the healthcheck runs {tool}, which the image does not have")
        elif "/health" not in " ".join(test):
            problems.append(f"{name}: the healthcheck does not ask /health")
        if "replicas" not in (service.get("deploy") or {}):
            problems.append(f"{name}: no deploy.replicas")
        for key, value in environment.items():
            if key.startswith("MYELIN_GATEWAY__"):
                for url in value.split(","):
                    host, port = host_of(url.strip())
                    upstream = services.get(host)
                    if upstream is None:
                        problems.append(f"{name}: {key} names {host}, no service in the stack")
                        continue
                    if port != LISTENER_PORT:
                        problems.append(f"{name}: {key} uses port {port}, not the listener port {LISTENER_PORT}")
                    if not service_networks(service) & service_networks(upstream):
                        problems.append(f"{name}: shares no network with {host}")
                    if (upstream.get("deploy") or {}).get("endpoint_mode") != "dnsrr":
                        problems.append(f"{name}: {host} has a virtual IP; endpoint_mode dnsrr makes its name resolve to every replica")
    persisters = [s for s in myelin.values() if as_dict(s.get("environment"))["MYELIN_ROLE"] == "event-persister"]
    if len(persisters) != 1:
        problems.append(f"{len(persisters)} event-persister services, not 1")
    for service in persisters:
        deploy = service.get("deploy") or {}
        if deploy.get("replicas") != 1 or deploy.get("mode", "replicated") != "replicated":
            problems.append("event-persister: deploy.replicas must be 1")
        if (deploy.get("update_config") or {}).get("order") != "stop-first":
            problems.append("event-persister: update_config.order must be stop-first, or an update runs two at once")
    for required in ("gateway", "client-api", "federation-api", "federation-sender", "synchrotron", "event-persister"):
        if required not in {as_dict(s.get("environment"))["MYELIN_ROLE"] for s in myelin.values()}:
            problems.append(f"no service runs MYELIN_ROLE={required}")
    check(f"Myelin services ({', '.join(myelin)}): roles, secret files, config, database, bus, upstreams, health checks, replicas", problems)
    return stack, net_names


# ---------------------------------------------------------------------------
# traefik: labels, traefik's flags, file-provider configs, Kubernetes routes.

def parse_labels(labels):
    routers, services, middlewares, other = {}, {}, {}, {}
    for key, value in labels.items():
        parts = key.split(".")
        if len(parts) >= 4 and parts[0] == "traefik" and parts[1] == "http":
            table = {"routers": routers, "services": services, "middlewares": middlewares}.get(parts[2])
            if table is not None:
                table.setdefault(parts[3], {})[".".join(parts[4:])] = value
                continue
        other[key] = value
    return routers, services, middlewares, other


def traefik_flags(command):
    flags = {}
    for item in command or []:
        key, _, value = str(item).lstrip("-").partition("=")
        flags[key.lower()] = value
    entrypoints = {k.split(".")[1] for k in flags if k.startswith("entrypoints.")}
    resolvers = {k.split(".")[1] for k in flags if k.startswith("certificatesresolvers.")}
    return flags, entrypoints, resolvers


def file_provider_configs():
    skip_dirs = {".git", "target", "node_modules", ".mirror"}
    found = []
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        if parts & skip_dirs or not path.is_file() or path.suffix not in (".yml", ".yaml", ".toml"):
            continue
        if path.is_relative_to(ROOT / "k8s") or path == ROOT / "swarm" / "stack.yml":
            continue
        try:
            docs = [tomllib.loads(path.read_text())] if path.suffix == ".toml" else load_docs(path)
        except Exception:
            continue
        for doc in docs:
            http = doc.get("http") if isinstance(doc, dict) else None
            if isinstance(http, dict) and isinstance(http.get("routers"), dict):
                found.append((path, http))
    return found


def traefik_checks(swarm, kubernetes_docs):
    section("traefik: stack.yml labels, traefik's flags, file-provider configs, Kubernetes routes")
    if swarm is None:
        skip("traefik labels", "swarm/stack.yml did not load")
        return
    stack, net_names = swarm
    services = stack["services"]
    proxies = [s for s in services.values() if str(s.get("image", "")).startswith("traefik")]
    if len(proxies) != 1:
        fail("traefik service", f"{len(proxies)} services run a traefik image, not 1")
        return
    proxy = proxies[0]
    flags, entrypoints, resolvers = traefik_flags(proxy.get("command"))
    proxy_networks = set(proxy.get("networks", []) if isinstance(proxy.get("networks"), list) else (proxy.get("networks") or {}).keys())
    labelled = {name: as_dict((s.get("deploy") or {}).get("labels")) for name, s in services.items()}
    labelled = {name: labels for name, labels in labelled.items() if labels.get("traefik.enable") == "true"}
    problems = []
    if "providers.swarm.endpoint" not in flags and "providers.swarm" not in flags:
        problems.append("traefik runs without the swarm provider (--providers.swarm.*)")
    for name, service in services.items():
        if any(key.startswith("traefik.") for key in as_dict(service.get("labels"))):
            problems.append(f"{name}: traefik labels on the container; Swarm services need them under deploy.labels")
    if not labelled:
        problems.append("no service has deploy.labels traefik.enable=true")
    label_hosts, label_routers, label_ports = set(), {}, set()
    for name, labels in labelled.items():
        routers, lb_services, middlewares, other = parse_labels(labels)
        service_networks = set(services[name].get("networks", []) if isinstance(services[name].get("networks"), list) else (services[name].get("networks") or {}).keys())
        network_labels = [k for k in other if k in ("traefik.docker.network", "traefik.swarm.network")]
        if len(network_labels) == 2:
            problems.append(f"{name}: both traefik.docker.network and traefik.swarm.network; traefik v3 skips such a service")
        for key in network_labels:
            shared = {net_names[n] for n in service_networks & proxy_networks}
            if other[key] not in shared:
                problems.append(f"{name}: {key}={other[key]} is not a network it shares with traefik ({', '.join(sorted(shared)) or 'none'})")
        if len(service_networks) > 1 and not network_labels and not flags.get("providers.swarm.network"):
            problems.append(f"{name}: on several networks but no traefik.docker.network label says which one traefik uses")
        for lb_name, lb in lb_services.items():
            port = lb.get("loadbalancer.server.port")
            label_ports.add(port)
            if port != str(LISTENER_PORT):
                problems.append(f"{name}: service {lb_name} sends to port {port}, not the listener port {LISTENER_PORT}")
        if not routers:
            problems.append(f"{name}: no routers")
        for router_name, router in routers.items():
            label_routers[router_name] = router
            rule = router.get("rule")
            if not rule or not hosts_in_rule(rule):
                problems.append(f"{name}: router {router_name} has no Host() rule")
            label_hosts |= hosts_in_rule(rule)
            for entrypoint in filter(None, router.get("entrypoints", "").split(",")):
                if entrypoint not in entrypoints:
                    problems.append(f"{name}: router {router_name} uses entrypoint {entrypoint}, which traefik does not define ({', '.join(sorted(entrypoints))})")
            target = router.get("service")
            if target is None and len(lb_services) != 1:
                problems.append(f"{name}: router {router_name} names no service and there is not exactly one")
            elif target is not None and "@" not in target and target not in lb_services:
                problems.append(f"{name}: router {router_name} sends to service {target}, which no label defines")
            resolver = router.get("tls.certresolver")
            if resolver and resolver not in resolvers:
                problems.append(f"{name}: router {router_name} uses certresolver {resolver}, which traefik does not define")
            for middleware in filter(None, router.get("middlewares", "").split(",")):
                if "@" not in middleware and middleware not in middlewares:
                    problems.append(f"{name}: router {router_name} uses middleware {middleware}, which no label defines")
        if not any(r.get("tls.certresolver") for r in routers.values()):
            problems.append(f"{name}: no router has a TLS certresolver")
    check(f"labels on {', '.join(labelled) or 'no service'} agree with traefik's flags and networks "
          f"(hosts {', '.join(sorted(label_hosts))}; entrypoints {', '.join(sorted(entrypoints))}; resolvers {', '.join(sorted(resolvers))})", problems)

    configs = file_provider_configs()
    if not configs:
        skip("traefik file-provider configs", "none in the repository")
    for path, http in configs:
        problems = []
        routers = http.get("routers") or {}
        file_services = http.get("services") or {}
        relevant = {n: r for n, r in routers.items() if n in label_routers or hosts_in_rule(r.get("rule")) & label_hosts}
        if not relevant:
            skip(rel(path), "its routers serve other hosts")
            continue
        for router_name, router in relevant.items():
            hosts = hosts_in_rule(router.get("rule"))
            if hosts != label_hosts:
                problems.append(f"router {router_name}: hosts {sorted(hosts)} differ from the labels' {sorted(label_hosts)}")
            if router_name in label_routers:
                label = label_routers[router_name]
                if " ".join(str(router.get("rule", "")).split()) != " ".join(label.get("rule", "").split()):
                    problems.append(f"router {router_name}: rule {router.get('rule')!r} differs from the label's {label.get('rule')!r}")
                file_entrypoints = sorted(router.get("entryPoints") or router.get("entrypoints") or [])
                if file_entrypoints != sorted(filter(None, label.get("entrypoints", "").split(","))):
                    problems.append(f"router {router_name}: entrypoints {file_entrypoints} differ from the label's {label.get('entrypoints')}")
                resolver = (router.get("tls") or {}).get("certResolver") if isinstance(router.get("tls"), dict) else None
                if resolver != label.get("tls.certresolver"):
                    problems.append(f"router {router_name}: certResolver {resolver} differs from the label's {label.get('tls.certresolver')}")
            target = str(router.get("service", "")).split("@")[0]
            servers = ((file_services.get(target) or {}).get("loadBalancer") or {}).get("servers") or []
            for server in servers:
                _, port = host_of(server.get("url", ""))
                if port != LISTENER_PORT:
                    problems.append(f"router {router_name}: server {server.get('url')} is not on port {LISTENER_PORT}")
        check(f"{rel(path)}: routers {', '.join(sorted(relevant))} match the stack.yml labels", problems)

    routes = []
    for _, doc, _ in kubernetes_docs:
        if doc["kind"] == "Ingress":
            routes.append((f"Ingress {doc['metadata']['name']}", {r.get("host") for r in doc["spec"].get("rules", []) if r.get("host")}))
        if doc["kind"] == "IngressRoute":
            hosts = set()
            for route in doc["spec"].get("routes", []):
                hosts |= hosts_in_rule(route.get("match"))
            routes.append((f"IngressRoute {doc['metadata']['name']}", hosts))
    if routes:
        check("the Kubernetes Ingress and IngressRoutes serve the labels' hosts",
              [f"{what}: hosts {sorted(hosts)} differ from the labels' {sorted(label_hosts)}" for what, hosts in routes if hosts != label_hosts])


image_checks()
kubernetes_docs = kubernetes_checks()
swarm = swarm_checks()
traefik_checks(swarm, kubernetes_docs)

print()
if failed:
    print(f"validate-deploy: {failed} of {passed + failed} checks FAILED")
    sys.exit(1)
print(f"validate-deploy: all {passed} checks passed" + (f" ({notes} notes above)" if notes else ""))
PY
