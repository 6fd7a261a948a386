# The SQS queues Sluice pipelines use, with a redrive policy from a pipeline's source queue to
# its dead-letter queue (SQS moves a message there itself after `max_receive_count` receives:
# what never reached a verdict, such as a message that brings down every replica), and an alarm
# on every dead-letter queue that holds messages. Input: `sluice plan --terraform sqs <pipeline
# files> > sqs.auto.tfvars.json`.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

variable "queues" {
  description = "Queue name => settings; `dead_letter_queue` names another queue of this map."
  type = map(object({
    fifo                       = bool
    dead_letter_queue          = optional(string)
    max_receive_count          = optional(number, 10)
    visibility_timeout_seconds = optional(number, 60)
  }))
}

variable "alarm_actions" {
  description = "SNS topic ARNs to notify when a dead-letter queue holds messages."
  type        = list(string)
  default     = []
}

locals {
  dead_letter_queues = toset([for q in values(var.queues) : q.dead_letter_queue if q.dead_letter_queue != null])
}

# Dead-letter queues first: the others' redrive policies name their ARNs.
resource "aws_sqs_queue" "dead_letter" {
  for_each                    = local.dead_letter_queues
  name                        = each.key
  fifo_queue                  = var.queues[each.key].fifo
  content_based_deduplication = var.queues[each.key].fifo
  message_retention_seconds   = 1209600 # 14 days, SQS's longest: time to look at them
}

resource "aws_sqs_queue" "queue" {
  for_each                    = { for name, q in var.queues : name => q if !contains(local.dead_letter_queues, name) }
  name                        = each.key
  fifo_queue                  = each.value.fifo
  content_based_deduplication = each.value.fifo
  visibility_timeout_seconds  = each.value.visibility_timeout_seconds
  redrive_policy = each.value.dead_letter_queue == null ? null : jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[each.value.dead_letter_queue].arn
    maxReceiveCount     = each.value.max_receive_count
  })
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = local.dead_letter_queues
  alarm_name          = "sluice-dead-letters-${each.key}"
  alarm_description   = "Messages in the dead-letter queue ${each.key}"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.key }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = var.alarm_actions
}

output "queue_urls" {
  value = merge(
    { for name, q in aws_sqs_queue.queue : name => q.url },
    { for name, q in aws_sqs_queue.dead_letter : name => q.url },
  )
}
