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

variable "queues" {
  description = "Durable queues."
  type        = set(string)
}

variable "exchanges" {
  description = "Exchange name => type (direct, fanout, topic, headers)."
  type        = map(string)
  default     = {}
}

variable "bindings" {
  description = "Queue bindings."
  type = list(object({
    exchange    = string
    queue       = string
    routing_key = string
  }))
  default = []
}

resource "rabbitmq_queue" "queue" {
  for_each = var.queues
  name     = each.key
  vhost    = var.vhost
  settings {
    durable     = true
    auto_delete = false
  }
}

resource "rabbitmq_exchange" "exchange" {
  for_each = var.exchanges
  name     = each.key
  vhost    = var.vhost
  settings {
    type        = each.value
    durable     = true
    auto_delete = false
  }
}

resource "rabbitmq_binding" "binding" {
  for_each         = { for b in var.bindings : "${b.exchange}/${b.queue}/${b.routing_key}" => b }
  source           = each.value.exchange
  vhost            = var.vhost
  destination      = each.value.queue
  destination_type = "queue"
  routing_key      = each.value.routing_key
  depends_on       = [rabbitmq_queue.queue, rabbitmq_exchange.exchange]
}
