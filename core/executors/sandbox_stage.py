"""Stage a run's folders where its sandbox can reach them, then become the run's uid (run as root).

Started as ``unshare --mount --propagation private -- python -I -S sandbox_stage.py SPEC CMD...`` by
the local runner (see :mod:`core.executors.sandbox`), so every mount below happens in a mount
namespace of the run's own and is gone with it.  It opens each folder of SPEC first (while the host's
/tmp is still visible), covers /tmp with a small tmpfs every user may traverse, bind-mounts each
folder from its descriptor under ``SPEC["stage"]``, adds the tmpfs folders of SPEC (the sandbox's
/tmp: size- and inode-limited, owned by the run), drops to the run's uid and gid with no
supplementary groups, and ``exec``-s CMD.  Any failure exits 125 with one line on stderr, which
becomes the job's log.

Standalone on purpose: it runs as root under ``-I -S``, so it imports nothing of the project.
"""
import ctypes
import json
import os
import sys

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC = 2, 4, 8, 4096, 16384
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype, flags: int, data) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount on {target}: {os.strerror(err)}")


def stage(spec: dict) -> None:
    root = spec["stage"]
    opened = [(name, os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)) for source, name in spec["binds"]]
    _mount("sumo-k8", os.path.dirname(root), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64")
    os.mkdir(root, 0o755)
    for name, fd in opened:
        os.mkdir(f"{root}/{name}", 0o755)
        _mount(f"/proc/self/fd/{fd}", f"{root}/{name}", None, MS_BIND | MS_REC, None)
        os.close(fd)
    for name, size, inodes in spec["tmpfs"]:
        os.mkdir(f"{root}/{name}", 0o700)
        _mount("sumo-k8-tmp", f"{root}/{name}", "tmpfs", MS_NOSUID | MS_NODEV,
               f"mode=0700,size={int(size)},nr_inodes={int(inodes)},uid={int(spec['uid'])},gid={int(spec['gid'])}")


def main(argv: list[str]) -> int:
    try:
        spec = json.loads(argv[1])
        command = argv[2:]
        stage(spec)
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        os.execv(command[0], command)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        print(f"sandbox: cannot stage the run: {exc}", file=sys.stderr, flush=True)
    return 125


if __name__ == "__main__":
    sys.exit(main(sys.argv))
