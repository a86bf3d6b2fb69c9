from django.apps import AppConfig


class KafkaBridgeConfig(AppConfig):
    name = "kafka_bridge"
    verbose_name = "Kafka bridge"

    def ready(self) -> None:
        from common.health import readiness_check_register
        from kafka_bridge.consumers import DEAD_LETTERS_CONSUMER
        from kafka_bridge.health import kafka_readiness_check
        from kafka_bridge.registry import consumers_register

        readiness_check_register("kafka", kafka_readiness_check)
        consumers_register(DEAD_LETTERS_CONSUMER)
