"""``[[schedule]]`` tables: validated once, and every mistake is one line naming the schedule
and the field (exit 2 at the command line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crawler.errors import ConfigError
from crawler.service.config import Schedule, read_schedules
from crawler.settings import read_config_file

ROOT = Path(__file__).resolve().parent.parent
GOOD = """
[crawler]
obey_robots = false

[[schedule]]
name = "books"
spider = "books"
cron = "*/15 * * * *"
timezone = "Europe/Berlin"
args = { base_url = "http://127.0.0.1:8765", pages = 3 }
settings = { max_pages = 50, obey_robots = true }
state = "data/books.db"
feed = "data/books-{run}.jsonl"
jitter_s = 30
overlap = "queue"
misfire_grace_s = 600
max_runtime_s = 3000
min_items = 10

[[schedule]]
name = "quotes"
spider = "quotes"
cron = "@daily"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crawler.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_schedule_and_the_defaults(tmp_path: Path) -> None:
    books, quotes = read_schedules(write(tmp_path, GOOD))
    assert books.args == {"base_url": "http://127.0.0.1:8765", "pages": 3}
    assert books.feed_for(7) == Path("data/books-7.jsonl")
    assert books.overlap == "queue"
    assert books.timetable().offset.total_seconds() < 30
    assert quotes == Schedule(name="quotes", spider="quotes", cron="@daily")
    assert (quotes.timezone, quotes.overlap, quotes.jitter_s) == ("UTC", "skip", 0)
    assert quotes.grace() is None  # one period, decided by the timetable
    assert quotes.feed_for(1) is None


def test_schedule_tables_are_not_crawl_settings(tmp_path: Path) -> None:
    flat = write(
        tmp_path, 'concurrency = 4\n[[schedule]]\nname = "a"\nspider = "a"\ncron = "@daily"\n'
    )
    assert read_config_file(flat) == {"concurrency": 4}
    assert read_config_file(write(tmp_path, GOOD)) == {"obey_robots": False}


BAD = [
    ('cron = "61 * * * *"', "schedule 'books': cron: '61 * * * *': bad minute"),
    ('cron = "* * * *"', "schedule 'books': cron: '* * * *': wrong number of fields"),
    ('cron = "@often"', "schedule 'books': cron: unknown alias '@often'"),
    ('timezone = "Europe/Berlim"', "schedule 'books': timezone: 'Europe/Berlim' is not an IANA"),
    ('overlap = "allow"', "schedule 'books': overlap: Input should be 'skip' or 'queue'"),
    ("jitter_s = -1", "schedule 'books': jitter_s: Input should be greater than or equal to 0"),
    ("max_runtime_s = 0", "schedule 'books': max_runtime_s: Input should be greater than 0"),
    ('feed = "out-{day}.jsonl"', "schedule 'books': feed: 'out-{day}.jsonl' may hold {run}"),
    ("cronn = 1", "schedule 'books': unknown key 'cronn' (known: name, spider, cron,"),
    (
        "settings = { concurency = 4 }",
        "schedule 'books': settings: unknown setting 'concurency'; did you mean 'concurrency'?",
    ),
    ("settings = { max_pages = 0 }", "schedule 'books': settings: bad setting max_pages=0"),
]


@pytest.mark.parametrize(("line", "message"), BAD)
def test_one_line_naming_schedule_and_field(tmp_path: Path, line: str, message: str) -> None:
    key = line.split(" =", maxsplit=1)[0]
    table = "\n".join(
        row
        for row in ['name = "books"', 'spider = "books"', 'cron = "@daily"']
        if row.split(" =")[0] != key
    )
    with pytest.raises(ConfigError) as caught:
        read_schedules(write(tmp_path, f"[[schedule]]\n{table}\n{line}\n"))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[schedule]]\nspider = "a"\ncron = "@daily"\n', "schedule #1: name is required"),
        ('[[schedule]]\nname = "a b"\nspider = "a"\ncron = "@daily"\n', "schedule 'a b': name:"),
        ('[[schedule]]\nname = "a"\nspider = "a"\n', "schedule 'a': cron is required"),
        ("concurrency = 4\n", "has no [[schedule]] tables"),
        ('schedule = "daily"\n', "schedules are [[schedule]] tables"),
        ("[[schedule]\n", "is not valid TOML"),
        (
            '[[schedule]]\nname = "a"\nspider = "a"\ncron = "@daily"\n' * 2,
            "schedule 'a': the name is used twice",
        ),
        (
            '[[schedule]]\nname = "a"\nspider = "a"\ncron = "@daily"\nstate = "s.db"\n'
            '[[schedule]]\nname = "b"\nspider = "b"\ncron = "@hourly"\nstate = "./s.db"\n',
            "schedule 'b': state s.db is also schedule 'a''s",
        ),
    ],
)
def test_whole_file_mistakes(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_schedules(write(tmp_path, text))
    assert message in str(caught.value)


def schedule_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawler", "schedule", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_bad_cron_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "spiders").mkdir()
    write(tmp_path, '[[schedule]]\nname = "nightly"\nspider = "x"\ncron = "0 25 * * *"\n')
    ran = schedule_command("--config", "crawler.toml", cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr == "error: schedule 'nightly': cron: '0 25 * * *': bad hour\n"


def test_cli_unknown_spider_names_the_schedule(tmp_path: Path) -> None:
    (tmp_path / "spiders").mkdir()
    write(tmp_path, '[[schedule]]\nname = "nightly"\nspider = "nope"\ncron = "@daily"\n')
    ran = schedule_command("--config", "crawler.toml", "--check", cwd=tmp_path)
    assert ran.returncode == 2
    assert ran.stderr.startswith("error: schedule 'nightly': spider: ")
    assert ran.stderr.count("\n") == 1


def test_cli_check_prints_the_next_due_times(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[[schedule]]\nname = "books"\nspider = "books"\ncron = "30 2 * * *"\n'
        'timezone = "Europe/Berlin"\n',
    )
    ran = schedule_command(
        "--config", "crawler.toml", "--spiders-dir", str(ROOT / "spiders"), "--check", cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    name, rest = ran.stdout.strip().split(": ", 1)
    assert name == "books"
    assert rest.startswith("30 2 * * * (Europe/Berlin), next: ")
    times = rest.split("next: ")[1].split(", ")
    assert len(times) == 3
    assert all(t.endswith(("02:30:00+01:00", "02:30:00+02:00", "03:00:00+02:00")) for t in times)


def test_cli_once_with_an_unknown_name(tmp_path: Path) -> None:
    write(tmp_path, '[[schedule]]\nname = "books"\nspider = "books"\ncron = "@daily"\n')
    ran = schedule_command(
        "--config", "crawler.toml", "--spiders-dir", str(ROOT / "spiders"), "--once", "bok",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 2
    assert ran.stderr == "error: no schedule 'bok' in the config file (it has: books)\n"


def test_the_readme_example_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Scheduled crawls", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    [books] = read_schedules(write(tmp_path, example))
    assert (books.name, books.overlap, books.min_items) == ("books", "skip", 100)
    shipped = (ROOT / "config" / "crawler.toml").read_text(encoding="utf-8")
    commented = shipped.split("# [[schedule]]", 1)[1]
    uncommented = "[[schedule]]" + "\n".join(line[2:] for line in commented.splitlines())
    [example_in_config] = read_schedules(write(tmp_path, uncommented))
    same = {"exclude": {"args"}}  # the README's runs in compose, the config's on this machine
    assert example_in_config.model_dump(**same) == books.model_dump(**same)


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        ('{ parse = "x" }', "-a parse: BooksSpider.parse is not a spider argument"),
        ("{ download_delay = 2 }", "-a download_delay: that is a setting; use -s download_delay=2"),
        ('{ "bad-name" = 1 }', "-a bad-name: a spider argument is a name such as category"),
    ],
)
def test_cli_check_refuses_args_the_spider_refuses(tmp_path: Path, args: str, refused: str) -> None:
    write(
        tmp_path,
        f'[[schedule]]\nname = "books"\nspider = "books"\ncron = "@daily"\nargs = {args}\n',
    )
    ran = schedule_command(
        "--config", "crawler.toml", "--spiders-dir", str(ROOT / "spiders"), "--check", cwd=tmp_path
    )
    assert ran.returncode == 2
    assert ran.stderr == f"error: schedule 'books': args: {refused}\n"


def test_cli_state_in_a_missing_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[[schedule]]\nname = "books"\nspider = "books"\ncron = "@daily"\nstate = "nope/s.db"\n',
    )
    ran = schedule_command(
        "--config", "crawler.toml", "--spiders-dir", str(ROOT / "spiders"), "--check", cwd=tmp_path
    )
    assert ran.returncode == 2
    assert ran.stderr == "error: schedule 'books': state: folder nope does not exist\n"
