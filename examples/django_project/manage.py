#!/usr/bin/env python
"""Django's command-line utility for the example project.

Run from anywhere: ``python examples/django_project/manage.py runserver``.
"""

import os
import sys
from pathlib import Path


def main() -> None:
    # The project is imported as `examples.django_project`, from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
