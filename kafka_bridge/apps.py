from django.apps import AppConfig


class KafkaBridgeConfig(AppConfig):
    name = "kafka_bridge"
    verbose_name = "Kafka bridge"

    def ready(self) -> None:
        from common.health import readiness_check_register
        from kafka_bridge.health import kafka_readiness_check

        readiness_check_register("kafka", kafka_readiness_check)
