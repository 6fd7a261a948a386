# The Kafka topics Sluice pipelines read and write. Input: `sluice plan --terraform kafka
# <pipeline files> > kafka.auto.tfvars.json`. Consumer groups are created by their first member
# and need no declaration.

terraform {
  required_version = ">= 1.5"
  required_providers {
    kafka = {
      source  = "Mongey/kafka"
      version = "~> 0.13"
    }
  }
}

variable "topics" {
  description = "Topic name => settings; `sluice plan` gives each topic `{}` (the defaults below)."
  type = map(object({
    partitions         = optional(number, 6)
    replication_factor = optional(number, 3)
    config             = optional(map(string), {})
  }))
}

resource "kafka_topic" "topic" {
  for_each           = var.topics
  name               = each.key
  partitions         = each.value.partitions
  replication_factor = each.value.replication_factor
  config             = each.value.config
}

output "topics" {
  value = { for name, t in kafka_topic.topic : name => t.partitions }
}
