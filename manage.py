#!/usr/bin/env python
import os
import sys

WORKER_COMMANDS = {"run_consumer", "run_relay", "run_webhook_dispatcher"}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in WORKER_COMMANDS:
        from kafka_bridge.lifecycle import install_early_stop_handler

        install_early_stop_handler()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
