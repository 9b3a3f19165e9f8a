"""worktrees.snapshots against cases a review found where a read of what changed was not
the full read's tree: after a setup and after each step, the two must agree (or both
refuse, for a name git refuses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from worktrees.changes import snapshot_tree
from worktrees.errors import GitFailed
from worktrees.snapshots import Snapshots

from .gitrepo import TIMEOUT, git, make_repo

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="inotify is Linux's: elsewhere every read is full"
)


async def _full_tree(top: Path) -> str:
    index = Path(await git(top, "rev-parse", "--path-format=absolute", "--git-path", "index"))
    return await snapshot_tree(top, index)


OTHER = (
    "mkdir ../other && cd ../other && git init -q && echo o > o && git add o"
    " && git -c user.name=t -c user.email=t@t commit -qm o && cd ../repo"
)
#: (setup, steps): shell commands in a fresh repository; after the setup and after each
#: step the read of what changed must give the full read's tree. Each one a case a
#: review found where it did not.
SCENARIOS = {
    "a force-added ignored file deleted, then made again": (
        "echo '*.log' > .gitignore && echo a > f.log && git add .gitignore"
        " && git add -f f.log && git commit -qm x",
        ["rm f.log", "echo b > f.log", "git update-index --refresh >/dev/null || true",
         "echo c > f.log"],
    ),
    "an ignored directory holding a tracked file, made again": (
        "echo 'dist/' > .gitignore && mkdir dist && echo v0 > dist/index.html"
        " && git add .gitignore && git add -f dist/index.html && git commit -qm x",
        ["rm -rf dist && mkdir dist && echo v1 > dist/index.html", "echo v2 > dist/index.html",
         "echo v3 > dist/index.html"],
    ),
    "a .gitignore made in a new directory": (
        "mkdir d && echo a > d/x.tmp",
        ["rm -rf d && mkdir d && echo '*.tmp' > d/.gitignore && echo b > d/x.tmp"],
    ),
    "CRLF kept by core.autocrlf": (
        "printf 'a\\r\\nb\\r\\n' > crlf.txt && git add crlf.txt && git commit -qm x"
        " && git config core.autocrlf true",
        ["printf 'a\\r\\nb\\r\\nc\\r\\n' > crlf.txt"],
    ),
    "CRLF kept by text=auto": (
        "printf 'a\\r\\nb\\r\\n' > crlf.txt && git add -A && git commit -qm x"
        " && echo '* text=auto' > .gitattributes && git add -A && git commit -qm y",
        ["printf 'a\\r\\nb\\r\\nc\\r\\n' > crlf.txt"],
    ),
    "an executable mode kept with core.fileMode off, its directory touched": (
        "git config core.fileMode false && mkdir src && echo x > src/run.sh && git add src"
        " && git update-index --chmod=+x src/run.sh && git commit -qm x",
        ["echo y >> src/run.sh", "touch src", "echo z >> src/run.sh"],
    ),
    "names git refuses": (
        "",
        ["echo x > 'git~1'", "echo x > '.git.'", "echo > '.git:x'", "echo > '.GIT..'",
         "mkdir e && echo > 'e/GIT~1 .'", "ln -s README.md .gitmodules"],
    ),
    "core.fileMode turned off": (
        "echo x > a.sh && git add a.sh && git commit -qm a",
        ["git config core.fileMode false", "chmod +x a.sh"],
    ),
    "an assume-unchanged file": (
        "git update-index --assume-unchanged README.md",
        ["echo changed > README.md"],
    ),
    "odd names": (
        "",
        ["printf a > $'\"lead'; printf b > $'back\\\\slash'; printf c > $'cr\\r';"
         " printf d > $'nl\\nx'; printf e > $'\\xff\\xfe'; printf f > $'tab\\there'",
         "printf A >> $'\"lead'; printf C >> $'cr\\r'; ln -s $'\\xff\\xfe' $'link\\r'"],
    ),
    "core.fileMode off: a mode the agent's index holds": (
        "git config core.fileMode false && echo x > x && git add x"
        " && git update-index --chmod=+x x && git commit -qm x",
        ["rm x", "echo y > x", "git update-index --chmod=-x x", "echo z >> x",
         "git rm -q -f --cached x"],
    ),
    "assume-unchanged and skip-worktree set later": (
        "echo a > a && echo b > b && git add a b && git commit -qm a",
        ["git update-index --assume-unchanged a", "echo more >> a",
         "git update-index --skip-worktree b && rm b"],
    ),
    "a nested repository whose .git is a file": (
        "",
        ["mkdir sub && cd sub && git init -q --separate-git-dir=../../sepgit && echo f > f"
         " && git add f && git -c user.name=t -c user.email=t@t commit -qm s"],
    ),
    "a submodule: its directory touched, a branch that has one, a commit in it": (
        OTHER + " && git checkout -qb withsub"
        " && git -c protocol.file.allow=always submodule add -q ../other sub"
        " && git commit -qm sub && git checkout -q main && rm -rf sub"
        " && git config --remove-section submodule.sub",
        ["git checkout -q withsub", "touch sub",
         "git -C sub -c user.name=t -c user.email=t@t commit -q --allow-empty -m e"],
    ),
    "names with a backslash, a FIFO where a file was": (
        "echo t > t && git add t && git commit -qm t && mkdir d",
        ["echo x > 'd/a\\.git'", "rm 'd/a\\.git' && ln -s target 'd/gi7eba~1'",
         "rm 'd/gi7eba~1' && rm t && mkfifo t"],
    ),
    "CRLF under an ignored .gitattributes, and crlf=auto": (
        "printf 'a\\r\\nb\\r\\n' > w.txt && git add w.txt && git commit -qm w"
        " && echo .gitattributes > .gitignore && git add .gitignore && git commit -qm i"
        " && printf '* text=auto\\n' > .gitattributes",
        ["printf 'c\\r\\n' >> w.txt", "printf '* crlf=auto\\n' > .gitattributes",
         "printf 'd\\r\\n' >> w.txt"],
    ),
    "a .gitattributes in a directory a checkout brings": (
        "git checkout -qb b && mkdir v && printf 'a\\r\\n' > v/w.txt && git add v"
        " && git commit -qm w && printf '* text=auto\\n' > v/.gitattributes && git add v"
        " && git commit -qm a && git checkout -q main",
        ["git checkout -q b"],
    ),
    "a tracked file a .gitignore made again ignores": (
        "mkdir d && echo t > d/.gitignore && echo t > d/t && git add -f d && git commit -qm d",
        ["rm -rf d", "mkdir d && echo t > d/.gitignore && echo t2 > d/t"],
    ),
    "core.ignorecase on": (
        "git config core.ignorecase true",
        ["mv README.md readme.md"],
    ),
}  # fmt: skip


def _sh(cwd: Path, command: str) -> None:
    subprocess.run(["bash", "-c", command], cwd=cwd, check=True, capture_output=True)


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_a_read_of_what_changed_follows_what_git_add_does(name: str, tmp_path: Path) -> None:
    setup, steps = SCENARIOS[name]
    repo = make_repo(tmp_path / "repo")
    if setup:
        _sh(repo, setup)
    snaps = Snapshots(scratch=tmp_path / "scratch")
    index = Path(await git(repo, "rev-parse", "--path-format=absolute", "--git-path", "index"))
    with trio.fail_after(TIMEOUT):
        try:
            await _steps(repo, snaps, index, steps)
        finally:
            snaps.close()


async def _steps(repo: Path, snaps: Snapshots, index: Path, steps: list[str]) -> None:
    for step in ["", *steps]:
        if step:
            _sh(repo, step)
        try:
            full: str | Exception = await _full_tree(repo)
        except GitFailed as exc:  # a name git refuses: the read must refuse it too
            full = exc
        if isinstance(full, Exception):
            with pytest.raises(GitFailed):
                await snaps.tree(repo, index)
        else:
            assert await snaps.tree(repo, index) == full, step
