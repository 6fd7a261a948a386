# The RabbitMQ queues, exchanges and bindings Sluice pipelines use (their queues, `declare_queue`,
# `topology` sections and dead-letter queues). Input: `sluice plan --terraform rabbitmq <pipeline
# files> > rabbitmq.auto.tfvars.json`.

terraform {
  required_version = ">= 1.5"
  required_providers {
    rabbitmq = {
      source  = "cyrilgdn/rabbitmq"
      version = "~> 1.8"
    }
  }
}

variable "vhost" {
  description = "The virtual host everything is declared in."
  type        = string
  default     = "/"
}

# Settings as the pipelines declare them: a queue or exchange that exists with other settings is
# refused by the broker when Sluice declares it again.
variable "queues" {
  description = "Queue name => durability and arguments (a JSON object: x-queue-type, dead-lettering, ...)."
  type = map(object({
    durable        = bool
    arguments_json = string
  }))
}

variable "exchanges" {
  description = "Exchange name => type (direct, fanout, topic, headers), durability and arguments."
  type = map(object({
    type           = string
    durable        = bool
    arguments_json = string
  }))
  default = {}
}

variable "bindings" {
  description = "Queue bindings; arguments (a JSON object) are a headers exchange's x-match and headers."
  type = list(object({
    exchange       = string
    queue          = string
    routing_key    = string
    arguments_json = string
  }))
  default = []
}

resource "rabbitmq_queue" "queue" {
  for_each = var.queues
  name     = each.key
  vhost    = var.vhost
  settings {
    durable        = each.value.durable
    auto_delete    = false
    arguments_json = each.value.arguments_json
  }
}

resource "rabbitmq_exchange" "exchange" {
  for_each = var.exchanges
  name     = each.key
  vhost    = var.vhost
  settings {
    type        = each.value.type
    durable     = each.value.durable
    auto_delete = false
    # The provider takes an exchange's arguments as a map (no arguments_json, as queues have).
    arguments = jsondecode(each.value.arguments_json)
  }
}

resource "rabbitmq_binding" "binding" {
  for_each         = { for b in var.bindings : "${b.exchange}/${b.queue}/${b.routing_key}/${b.arguments_json}" => b }
  source           = each.value.exchange
  vhost            = var.vhost
  destination      = each.value.queue
  destination_type = "queue"
  routing_key      = each.value.routing_key
  arguments_json   = each.value.arguments_json
  depends_on       = [rabbitmq_queue.queue, rabbitmq_exchange.exchange]
}
