#!/usr/bin/python3 -IS
"""labkit-cni: a minimal CNI runtime (what libcni/cnitool do for a kubelet).

  labkit-cni add|del|check POD_NAME NETNS_PATH [--ifname eth0]
             [--conf-dir /etc/cni/net.d] [--bin-dir /usr/lib/cni]
             [--args 'K=V;K2=V2'] [--cap-args JSON]
  labkit-cni add-all [--conf-dir ...] [--bin-dir ...] < PODS

add-all wires many pods in one process, one JSON object per line of stdin:
{"pod": POD_NAME, "netns": NETNS_PATH, "args": "K=V;...", "capArgs": {...},
"out": FILE, "name": SHOWN}, all of them side by side. Each pod's ADD result goes
to its `out` file, then a line `labkit-time pod SHOWN NANOSECONDS`; if a pod
fails, its error is printed and the exit status is 1 (a failed ADD undoes
itself). A node bringing up its pods starts one Python, not one per pod.

Runs the plugins of the first *.conflist (sorted by name) in --conf-dir, per the
CNI spec (1.0 / 0.4): ADD in order, chaining prevResult; DEL in reverse order,
best effort; CHECK in order. Each plugin gets its config with `name` and
`cniVersion` of the list injected, and `runtimeConfig` holding the --cap-args
entries that its `capabilities` ask for (e.g. portMappings for portmap).

The ADD result (and the args used) is cached in /var/lib/labkit/cni/POD_NAME.json:
DEL and CHECK send it as prevResult, and reuse its --args/--cap-args when
they are not given again. A successful DEL removes it.

Loopback: like containerd and cri-o, `lo` is brought up by running the
`loopback` plugin as its own one-plugin network before the list on ADD (and
after it on DEL), unless the list already contains a loopback plugin.

Output: ADD prints the result JSON on stdout. A plugin error is printed (the
plugin's JSON error) on stderr and the exit status is 1; a failed ADD first
deletes, best effort, what the plugins that ran may have set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

# os.path, not pathlib, and no typing: every node's up starts this (8 ms less each).
CACHE_DIR = "/var/lib/labkit/cni"
CONF_DIR = "/etc/cni/net.d"
BIN_DIR = "/usr/lib/cni"
PLUGIN_TIMEOUT = 120  # seconds; a plugin that hangs must not hang the caller forever

Json = dict  # of str to JSON values


class PluginError(Exception):
    """A plugin failed; the message is its JSON error (or a synthesized one)."""


def load_conflist(conf_dir: str) -> Json:
    names = sorted(n for n in os.listdir(conf_dir) if n.endswith(".conflist"))
    if not names:
        raise PluginError(error_json(1, f"no *.conflist in {conf_dir}"))
    path = os.path.join(conf_dir, names[0])
    conf: Json = json.loads(read(path))
    if not conf.get("plugins") or not conf.get("name") or not conf.get("cniVersion"):
        raise PluginError(error_json(1, f"{path}: needs name, cniVersion and plugins"))
    return conf


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


def write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def error_json(code: int, msg: str, details: str = "") -> str:
    return json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg, "details": details})


def plugin_config(plugin: Json, conflist: Json, cap_args: Json, prev_result: Json | None) -> Json:
    """The stdin of one plugin: its own config plus what the runtime injects."""
    config = dict(plugin, name=conflist["name"], cniVersion=conflist["cniVersion"])
    wanted = {cap for cap, on in plugin.get("capabilities", {}).items() if on}
    runtime_config = {cap: value for cap, value in cap_args.items() if cap in wanted}
    if runtime_config:
        config["runtimeConfig"] = runtime_config
    if prev_result is not None:
        config["prevResult"] = prev_result
    return config


def run_plugin(command: str, config: Json, env: dict[str, str], bin_dirs: list[str]) -> Json | None:
    """Execute one plugin; return its parsed stdout (None when empty)."""
    binary = next(
        (path for d in bin_dirs if os.path.isfile(path := os.path.join(d, config["type"]))), None
    )
    if binary is None:
        raise PluginError(
            error_json(1, f"plugin {config['type']!r} not found in {':'.join(bin_dirs)}")
        )
    try:
        proc = subprocess.run(
            [binary],
            input=json.dumps(config).encode(),
            capture_output=True,
            env={**os.environ, **env, "CNI_COMMAND": command},
            timeout=PLUGIN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise PluginError(error_json(1, f"plugin {config['type']} {command} timed out")) from None
    if proc.stderr:
        sys.stderr.write(proc.stderr.decode(errors="replace"))  # plugin logs, passed through
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        # The spec says the error is a JSON object on stdout; fall back if not.
        raise PluginError(
            out or error_json(proc.returncode, f"plugin {config['type']} {command} failed")
        )
    return json.loads(out) if out else None


def loopback_list(conflist: Json) -> Json | None:
    """The one-plugin network that brings `lo` up, if it is not already in the list."""
    if any(p.get("type") == "loopback" for p in conflist["plugins"]):
        return None
    return {
        "cniVersion": conflist["cniVersion"],
        "name": "cni-loopback",
        "plugins": [{"type": "loopback"}],
    }


def cni_add(conflist: Json, env: dict[str, str], cap_args: Json, bin_dirs: list[str]) -> Json:
    result: Json | None = None
    for index, plugin in enumerate(conflist["plugins"]):
        try:
            result = (
                run_plugin("ADD", plugin_config(plugin, conflist, cap_args, result), env, bin_dirs)
                or result
            )
        except PluginError:
            # Undo what may be half set up: the plugins that ran, this one included.
            cni_del(
                dict(conflist, plugins=conflist["plugins"][: index + 1]),
                env,
                cap_args,
                result,
                bin_dirs,
            )
            raise
    if result is None:
        raise PluginError(error_json(1, "the plugin chain returned no result"))
    return result


def cni_del(
    conflist: Json, env: dict[str, str], cap_args: Json, cached: Json | None, bin_dirs: list[str]
) -> list[str]:
    """Run DEL on every plugin in reverse order; return the errors (empty: success)."""
    errors = []
    for plugin in reversed(conflist["plugins"]):
        try:
            run_plugin("DEL", plugin_config(plugin, conflist, cap_args, cached), env, bin_dirs)
        except PluginError as error:
            errors.append(str(error))
    return errors


def add_pod(
    pod: str,
    netns: str,
    ifname: str,
    cni_args: str,
    cap_args: Json,
    conflist: Json,
    bin_dirs: list[str],
) -> Json:
    """ADD one pod (lo first, unless the list has its own loopback) and cache the result."""
    env = {
        "CNI_CONTAINERID": pod,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_ARGS": cni_args,
        "CNI_PATH": ":".join(bin_dirs),
    }
    lo_env = dict(env, CNI_IFNAME="lo", CNI_ARGS="")
    loopback = loopback_list(conflist)
    if loopback:
        cni_add(loopback, lo_env, {}, bin_dirs)
    try:
        result = cni_add(conflist, env, cap_args, bin_dirs)
    except PluginError:
        if loopback:
            cni_del(loopback, lo_env, {}, None, bin_dirs)
        raise
    os.makedirs(CACHE_DIR, exist_ok=True)
    cache = {
        "kind": "labkit-cni-cache",
        "containerId": pod,
        "ifName": ifname,
        "netns": netns,
        "networkName": conflist["name"],
        "cniArgs": cni_args,
        "capabilityArgs": cap_args,
        "result": result,
    }
    write(os.path.join(CACHE_DIR, f"{pod}.json"), json.dumps(cache, indent=2))
    return result


def add_all(lines: list[str], conflist: Json, bin_dirs: list[str]) -> None:
    """Every pod side by side, as a kubelet sets up its pods' sandboxes: the
    plugins are made for it (host-local's store and iptables take locks)."""
    entries = [json.loads(line) for line in lines if line.strip()]
    failed: list[BaseException] = []  # raised here, not lost with its thread
    said = threading.Lock()

    def wire(entry: Json) -> None:
        started = time.monotonic_ns()
        try:
            result = add_pod(
                entry["pod"],
                entry["netns"],
                entry.get("ifname", "eth0"),
                entry.get("args", ""),
                entry.get("capArgs") or {},
                conflist,
                bin_dirs,
            )
            write(entry["out"], json.dumps(result, indent=2) + "\n")
        except BaseException as error:
            failed.append(error)
            return
        took = time.monotonic_ns() - started
        with said:
            print(f"labkit-time pod {entry.get('name', entry['pod'])} {took}", flush=True)

    threads = [threading.Thread(target=wire, args=(entry,)) for entry in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]


def wire_all(conf_dir: str, bin_dir: str) -> int:
    try:
        add_all(sys.stdin.read().splitlines(), load_conflist(conf_dir), bin_dir.split(":"))
    except PluginError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


def main() -> int:
    if sys.argv[1:] == ["add-all"]:
        # What every node's script runs at up: without argparse (and, by the
        # shebang, without site), a start is 25 ms instead of 30.
        return wire_all(CONF_DIR, BIN_DIR)
    import argparse

    parser = argparse.ArgumentParser(
        prog="labkit-cni", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["add", "del", "check", "add-all"])
    parser.add_argument("pod", metavar="POD_NAME", nargs="?", help="the CNI container id")
    parser.add_argument("netns", metavar="NETNS_PATH", nargs="?", help="/var/run/netns/POD_NAME")
    parser.add_argument("--ifname", default="eth0")
    parser.add_argument("--conf-dir", default=CONF_DIR)
    parser.add_argument("--bin-dir", default=BIN_DIR, help="colon-separated list, like CNI_PATH")
    parser.add_argument(
        "--args", default=None, help="CNI_ARGS, e.g. 'IgnoreUnknown=1;IP=10.244.1.7'"
    )
    parser.add_argument(
        "--cap-args",
        default=None,
        type=json.loads,
        help="capability args as JSON, e.g. '{\"portMappings\": [...]}'",
    )
    opts = parser.parse_args()
    if opts.command == "add-all":
        return wire_all(opts.conf_dir, opts.bin_dir)
    bin_dirs = opts.bin_dir.split(":")
    if opts.pod is None or opts.netns is None:
        parser.error(f"{opts.command} needs POD_NAME and NETNS_PATH")

    cache = os.path.join(CACHE_DIR, f"{opts.pod}.json")
    if opts.command == "del" and not os.path.exists(cache) and not os.path.exists(opts.netns):
        return 0  # no ADD ever succeeded (a failed one undoes itself): nothing to delete
    cached: Json = json.loads(read(cache)) if os.path.exists(cache) else {}
    cni_args = opts.args if opts.args is not None else cached.get("cniArgs", "")
    cap_args = opts.cap_args if opts.cap_args is not None else cached.get("capabilityArgs", {})
    netns = opts.netns
    if opts.command == "del" and not os.path.exists(netns):
        netns = ""  # the spec's way to say "already gone": plugins then only release IPAM etc.
    env = {
        "CNI_CONTAINERID": opts.pod,
        "CNI_NETNS": netns,
        "CNI_IFNAME": opts.ifname,
        "CNI_ARGS": cni_args,
        "CNI_PATH": opts.bin_dir,
    }
    lo_env = dict(env, CNI_IFNAME="lo", CNI_ARGS="")

    try:
        conflist = load_conflist(opts.conf_dir)
        loopback = loopback_list(conflist)
        if opts.command == "add":
            result = add_pod(
                opts.pod, opts.netns, opts.ifname, cni_args, cap_args, conflist, bin_dirs
            )
            print(json.dumps(result, indent=2))
        elif opts.command == "del":
            errors = cni_del(conflist, env, cap_args, cached.get("result"), bin_dirs)
            if loopback:
                errors += cni_del(loopback, lo_env, {}, None, bin_dirs)
            if errors:
                sys.stderr.write("\n".join(errors) + "\n")
                return 1
            import contextlib

            with contextlib.suppress(FileNotFoundError):
                os.unlink(cache)
        else:
            if "result" not in cached:
                raise PluginError(
                    error_json(1, f"no cached ADD result for {opts.pod} in {CACHE_DIR}")
                )
            if not conflist.get("disableCheck"):
                for plugin in conflist["plugins"]:
                    run_plugin(
                        "CHECK",
                        plugin_config(plugin, conflist, cap_args, cached["result"]),
                        env,
                        bin_dirs,
                    )
    except PluginError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
